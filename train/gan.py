r"""Train a WGAN-GP (or WGAN) with a normal, GMM or TRIP prior; draw mode hopping.

  python -m train.gan --config configs/digits_wgangp_trip.py --workdir runs/gan
  python -m train.gan --config digits_wgangp_trip --workdir runs/gan_gmm \
      --config.prior.kind=gmm --config.prior.learnable=False
  python -m train.gan --config celeba_wgangp_trip --workdir runs/celeba_wgan \
      --config.gan.gradient_penalty=0          # WGAN: weight clipping, batch norm

Running the same command again after an interruption resumes from the newest
checkpoint in --workdir. Sample grids are written to WORKDIR/images/; score a
checkpoint with `python -m train.fid --workdir WORKDIR` (FID, or
--config.metric=classifier_fd on the digits). Mode hopping (paper Figure 5) of a
checkpoint, one trajectory per row:

  python -m train.gan --workdir runs/gan --mode_hopping [--num_hops 10] [--out F.png]
"""
import sys

from tripjax.training import cli
from tripjax.training import gan
from tripjax.training import mode_hopping


def main(argv=None) -> int:
  parser = cli.make_parser("train.gan", __doc__, config_help="A config file (e.g. "
                           "configs/digits_wgangp_trip.py) or a stock config name (e.g. "
                           "digits_wgangp_trip); optional with --mode_hopping.")
  cli.add_trainer_flags(parser)
  mode_hopping.add_cli_flags(parser)
  parser.add_argument("--step", type=int, help="With --mode_hopping: the checkpoint "
                      "step (default: the newest).")

  def run():
    args, config = cli.parse(parser, argv, config_required=False)
    if args.mode_hopping:
      cli.quiet_logs()
      print(mode_hopping.run_from_flags(args, config))
      return
    cli.train(args, config, gan.TRAINER)

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
