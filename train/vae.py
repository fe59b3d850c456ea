"""Train (or evaluate) a VAE with a normal, GMM or TRIP prior.

python -m train.vae --config configs/digits_vae_trip.py --workdir runs/digits_vae_trip
python -m train.vae --config configs/digits_vae_trip.py --workdir runs/digits_vae_gmm \
  --config.prior.kind=gmm

Running the same command again after an interruption resumes from the newest
checkpoint in --workdir. Evaluate a checkpoint (test ELBO and IWAE-100) with

python -m train.vae --workdir runs/digits_vae_trip --eval_only [--step 1240]

which reuses the config saved in the workdir (or the one given with --config, whose
overrides apply, e.g. --config.eval.iwae_samples=1000).
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from tripjax.training import vae

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/digits_vae_trip.py. "
    "Optional with --eval_only.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints, metrics and images.")
_EVAL_ONLY = flags.DEFINE_bool(
    "eval_only", False, "Only evaluate a checkpoint in --workdir: test ELBO and "
    "IWAE-k; writes workdir/eval_metrics.json and appends to metrics.jsonl.")
_STEP = flags.DEFINE_integer("step", None,
                             "With --eval_only: the checkpoint step (default: newest).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if _EVAL_ONLY.value:
    if config is None:
      config = vae.load_config(_WORKDIR.value)
    record = vae.evaluate_checkpoint(config, _WORKDIR.value, step=_STEP.value)
    print(" ".join(f"{name}={value}" for name, value in record.items()))
    return
  if config is None:
    raise app.UsageError("--config is required for training.")
  vae.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
