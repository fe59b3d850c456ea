"""Trains and caches the digit classifier behind the offline classifier FD.

  python -m train.train_classifier --workdir runs/classifier

Trains `DigitClassifier` on the offline digits train split (4,000 grey-level
images of `tripjax.data.load_dataset("digits", "train", binarize=False)`),
reports validation/test accuracy, and writes `classifier.msgpack` and
`classifier.json` into the workdir. A later call with the same settings reuses
the cache (`--retrain` to force). Deterministic for a given `--seed`; well
under a minute on a laptop CPU.
"""

import argparse
import dataclasses
import os
import sys
import time

from tripjax import data
from tripjax.metrics import classifier_fd


def _split(split: str):
  dataset = data.load_dataset("digits", split, binarize=False)
  return dataset.images, dataset.labels


def get_or_train_classifier(workdir: str,
                            config: classifier_fd.TrainConfig = classifier_fd.TrainConfig(),
                            retrain: bool = False,
                            log=print):
  """Params of the FD classifier cached in `workdir`, training it first if needed.

  The cache is reused only if it was trained with the same `config`.

  Returns:
    (params, metadata) where metadata holds the config and accuracies.
  """
  if not retrain:
    try:
      params, metadata = classifier_fd.load_classifier(workdir)
    except FileNotFoundError:
      pass
    else:
      if metadata.get("config") == dataclasses.asdict(config):
        log(f"using cached classifier in {workdir} "
            f"(test accuracy {metadata['test_accuracy']:.4f})")
        return params, metadata
      log(f"cached classifier in {workdir} has another config; retraining")
  start = time.time()
  train_images, train_labels = _split("train")
  params = classifier_fd.train_classifier(train_images, train_labels, config, log=log)
  metadata = {"config": dataclasses.asdict(config), "dataset": "digits",
              "train_split": "train", "train_seconds": round(time.time() - start, 1)}
  for split in ("validation", "test"):
    images, labels = _split(split)
    metadata[f"{split}_accuracy"] = classifier_fd.classifier_accuracy(params, images, labels)
    metadata[f"{split}_accuracy_binarized"] = classifier_fd.classifier_accuracy(
        params, data.binarize_images(images), labels)
  classifier_fd.save_classifier(workdir, params, metadata)
  log(f"trained in {metadata['train_seconds']} s; test accuracy "
      f"{metadata['test_accuracy']:.4f} (binarized {metadata['test_accuracy_binarized']:.4f}); "
      f"saved to {os.path.join(workdir, classifier_fd.WEIGHTS_FILENAME)}")
  return params, metadata


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="where the classifier is cached")
  parser.add_argument("--seed", type=int, default=classifier_fd.TrainConfig.seed)
  parser.add_argument("--num-epochs", type=int, default=classifier_fd.TrainConfig.num_epochs)
  parser.add_argument("--retrain", action="store_true", help="ignore an existing cache")
  args = parser.parse_args(argv)
  config = classifier_fd.TrainConfig(seed=args.seed, num_epochs=args.num_epochs)
  get_or_train_classifier(args.workdir, config, retrain=args.retrain)
  return 0


if __name__ == "__main__":
  sys.exit(main())
