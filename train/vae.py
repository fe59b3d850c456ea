r"""Train (or evaluate) a VAE with a normal, GMM or TRIP prior.

  python -m train.vae --config configs/digits_vae_trip.py --workdir runs/digits_vae_trip
  python -m train.vae --config digits_vae_trip --workdir runs/digits_vae_gmm \
      --config.prior.kind=gmm

Running the same command again after an interruption resumes from the newest
checkpoint in --workdir. Evaluate a checkpoint (test ELBO and IWAE-100) with

  python -m train.vae --workdir runs/digits_vae_trip --eval_only [--step 1240]

which reuses the config saved in the workdir (or the one given with --config, whose
overrides apply, e.g. --config.eval.iwae_samples=1000). Mode hopping (paper Figure 5)
of a checkpoint, one trajectory per row, in WORKDIR/images/:

  python -m train.vae --workdir runs/digits_vae_trip --mode_hopping [--num_resampled 2]
"""
import sys

from tripjax.training import cli
from tripjax.training import mode_hopping
from tripjax.training import vae


def main(argv=None) -> int:
  parser = cli.make_parser("train.vae", __doc__, config_help="A config file (e.g. "
                           "configs/digits_vae_trip.py) or a stock config name (e.g. "
                           "digits_vae_trip); optional with --eval_only and "
                           "--mode_hopping.")
  cli.add_trainer_flags(parser)
  parser.add_argument("--eval_only", action="store_true", help="Only evaluate a "
                      "checkpoint: test ELBO and IWAE-k; writes "
                      "workdir/eval_metrics.json and appends to metrics.jsonl.")
  mode_hopping.add_cli_flags(parser)
  parser.add_argument("--step", type=int, help="With --eval_only or --mode_hopping: "
                      "the checkpoint step (default: the newest).")

  def run():
    args, config = cli.parse(parser, argv, config_required=False)
    if args.mode_hopping:
      cli.quiet_logs()
      print(mode_hopping.run_from_flags(args, config))
      return
    if args.eval_only:
      cli.evaluate(args, config, vae.TRAINER)
      return
    cli.train(args, config, vae.TRAINER)

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
