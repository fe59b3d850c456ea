"""Do a GAN run's samples read as digits? Classifier FD, confident share, class TV.

  python -m benchmarks.gan_quickstart runs/gan                      # against the test digits
  python -m benchmarks.gan_quickstart runs/gan_a runs/gan_b --split validation

Scores `--num-samples` (5,000) samples of each run's newest checkpoint (or `--step`)
against the grey-level digits of `--split` (choose settings on "validation", report
"test"), with the cached digit classifier of `--classifier-workdir` (trained by the
stock config first if missing): classifier FD (lower is better), the share of samples
whose top class probability is >= 0.9, and the total variation between the
predicted-class histograms of the samples and of the real digits
(`tripjax.metrics.digit_quality`). A first row scores the real digits of the other
split (validation vs test) as the floor these numbers can reach. Prints a markdown
table; trains nothing.
"""
from __future__ import annotations

import argparse
import sys

TARGETS = "targets (issue 20): classifier FD <= 15, confident >= 80%, class TV <= 0.1"


def _other(split: str) -> str:
  return "test" if split == "validation" else "validation"


def row(name: str, step, quality) -> str:
  return (f"| {name} | {step} | {quality.classifier_fd:.2f} | "
          f"{100 * quality.confident_share:.1f}% | {quality.class_tv:.3f} |")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="*", help="GAN runs (train.gan workdirs)")
  parser.add_argument("--split", choices=("validation", "test"), default="test")
  parser.add_argument("--num-samples", type=int, default=5000)
  parser.add_argument("--batch-size", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None, help="default: the newest")
  parser.add_argument("--classifier-workdir", default="runs/classifier")
  args = parser.parse_args(argv)

  from tripjax import data as data_lib
  from tripjax.configs import digits_classifier
  from tripjax.metrics import digit_quality
  from tripjax.training import classifier as classifier_trainer
  from tripjax.training import trainers

  config = digits_classifier.get_config()
  config.train.progress_bar = False
  params, _ = classifier_trainer.get_or_train(config, args.classifier_workdir,
                                              log=lambda text: print(text, file=sys.stderr))
  reference = data_lib.load_dataset("digits", args.split, binarize=False).images
  other = data_lib.load_dataset("digits", _other(args.split), binarize=False).images
  print(f"{args.num_samples} samples per run vs the {len(reference)} {args.split} digits; "
        f"{TARGETS}\n")
  print("| run | step | classifier FD | confident (>= 0.9) | class TV |")
  print("|---|---|---|---|---|")
  print(row(f"real {_other(args.split)} digits", "-", digit_quality.digit_quality(
      params, other, reference, batch_size=args.batch_size)))
  for workdir in args.workdirs:
    sampler = trainers.load_checkpoint_sampler(workdir, args.step)
    quality = digit_quality.digit_quality_of_sampler(
        sampler.sample_fn, reference, params, num_samples=args.num_samples,
        batch_size=args.batch_size, seed=args.seed)
    print(row(workdir, sampler.position.step, quality))
  return 0


if __name__ == "__main__":
  sys.exit(main())
