r"""Train (or evaluate) a conditional VAE-TRIP, or a baseline (`--config.model.kind`:
cvae, the textbook CVAE; cvae_imputed, the same with the hidden labels imputed; concat,
decoder-only conditioning).

  python -m train.cvae --config configs/digits_cvae_trip.py --workdir runs/cvae
  python -m train.cvae --config digits_cvae_trip --workdir runs/cvae_textbook \
      --config.model.kind=cvae --config.data.hide_attribute_fraction=0.5

Running the same command again after an interruption resumes from the newest
checkpoint in --workdir. Evaluate a checkpoint (test bounds and condition violation
rates) with

  python -m train.cvae --workdir runs/cvae --eval_only [--step 1240]

which reuses the config saved in the workdir (or the one given with --config). Sample
images given attributes with `python -m train.cvae_sample`.
"""
import sys

from tripjax.training import cli
from tripjax.training import cvae


def main(argv=None) -> int:
  parser = cli.make_parser("train.cvae", __doc__, config_help="A config file (e.g. "
                           "configs/digits_cvae_trip.py) or a stock config name (e.g. "
                           "digits_cvae_trip); optional with --eval_only.")
  cli.add_trainer_flags(parser)
  parser.add_argument("--eval_only", action="store_true", help="Only evaluate a "
                      "checkpoint: test bounds and condition violation rates; writes "
                      "workdir/eval_metrics.json and appends to metrics.jsonl.")
  parser.add_argument("--step", type=int, help="With --eval_only: the checkpoint step "
                      "(default: the newest).")

  def run():
    args, config = cli.parse(parser, argv, config_required=False)
    if args.eval_only:
      cli.evaluate(args, config, cvae.TRAINER)
      return
    cli.train(args, config, cvae.TRAINER)

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
