r"""FID (or the offline classifier FD) of a trained run's samples.

  python -m train.fid --workdir runs/x --config.weights=inception_fid.npz
  python -m train.fid --workdir runs/x --config.metric=classifier_fd \
      --config.classifier_workdir=runs/classifier --config.num_samples=5000

Draws `num_samples` images from the run's checkpoint (the newest, or
`--config.step`), compares their feature statistics with the run's test split and
appends {"split": "fid", "fid": ...} (or "classifier_fd") to workdir/metrics.jsonl.
Works for every trainer (`train.vae`, `train.gan`, `train.cvae`). The config is
configs/fid.py; `weights` is the converted Inception file (see README).
"""
import json
import sys

from tripjax.training import cli
from tripjax.training import scoring


def main(argv=None) -> int:
  parser = cli.make_parser("train.fid", __doc__, config_help="Scoring config (default: "
                           "the stock 'fid' config).", workdir_help="The training run "
                           "to score (its config.json and checkpoints).")

  def run():
    args, config = cli.parse(parser, argv, default_config="fid")
    cli.quiet_logs()
    record = scoring.score_run(config, args.workdir)
    print(json.dumps(record))

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
