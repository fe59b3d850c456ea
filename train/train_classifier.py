"""Trains (or reuses) the digit classifier behind the offline classifier FD.

  python -m train.train_classifier --workdir runs/classifier

Trains `DigitClassifier` on the 4,000 grey-level training digits with the config
configs/digits_classifier.py (well under a minute on a laptop CPU), logs its
validation/test accuracy and writes classifier.msgpack and classifier.json into the
workdir; a workdir that holds a classifier of the same config is reused.
"""
import sys

from tripjax.training import classifier
from tripjax.training import cli


def main(argv=None) -> int:
  parser = cli.make_parser("train.train_classifier", __doc__,
                           config_help="Classifier config (default: the stock "
                           "'digits_classifier').", workdir_help="Where the classifier "
                           "is trained and cached.")
  cli.add_trainer_flags(parser)

  def run():
    args, config = cli.parse(parser, argv, default_config="digits_classifier")
    cli.start(args, config, classifier.validate_config)
    classifier.get_or_train(config, args.workdir)

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
