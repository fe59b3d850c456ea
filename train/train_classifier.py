"""Trains (or reuses) the classifiers of the metrics.

  python -m train.train_classifier --workdir runs/classifier
  python -m train.train_classifier --config celeba_attribute_classifier \
      --workdir runs/attr_classifier --config.data.data_dir=~/tensorflow_datasets

The default config (configs/digits_classifier.py) trains `DigitClassifier` on the
4,000 grey-level training digits (well under a minute on a laptop CPU), the classifier
behind the offline classifier FD and the digits' condition violation rate; it logs its
validation/test accuracy and writes classifier.msgpack and classifier.json into the
workdir. configs/celeba_attribute_classifier.py trains the CelebA attribute classifier
of the conditional VAE's condition violation rate (attribute_classifier.msgpack and
.json, with per-attribute accuracies). A workdir that holds a classifier of the same
config is reused.
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
