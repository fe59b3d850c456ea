"""Do a GAN run's samples read as digits? Classifier FD, confident share, class TV.

  python -m benchmarks.gan_quickstart runs/gan                      # against the test digits
  python -m benchmarks.gan_quickstart runs/gan_a runs/gan_b --split validation --steps 5000 8000
  python -m benchmarks.gan_quickstart runs/tune/* --split validation --save gan_quickstart_selection

Scores `--num-samples` (5,000) samples of each run's newest checkpoint (or each of
`--steps`) against the grey-level digits of `--split` (choose settings on "validation",
report "test"), with the cached digit classifier of `--classifier-workdir` (trained by
the stock config first if missing): classifier FD (lower is better), the share of
samples whose top class probability is >= 0.9, and the total variation between the
predicted-class histograms of the samples and of the real digits
(`tripjax.metrics.digit_quality`; the samples are those `benchmarks.gan_results` and
`train.fid` score). A first row scores the real digits of the other split (validation
vs test) as the floor these numbers can reach. Each row names its run by the fields
its config sets away from the stock quickstart config. Prints a markdown table;
`--save STUDY` also writes it as the results files `<results-dir>/STUDY.{json,md}`.
Trains nothing.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import results_files

TARGETS = "targets (issue 20): classifier FD <= 15, confident >= 80%, class TV <= 0.1"


def _other(split: str) -> str:
  return "test" if split == "validation" else "validation"


CONFIG_PATH = "configs/digits_wgangp_trip.py"
IGNORED_FIELDS = ("train.progress_bar", "train.checkpoint_every_steps")


def changed_fields(saved) -> dict:
  """{field: value} of a run's saved config where it differs from the stock
  quickstart's (seed, epochs and bookkeeping fields left out)."""
  from tripjax.configs import digits_wgangp_trip
  from tripjax.training import workdirs

  differences = workdirs.config_differences(saved, digits_wgangp_trip.get_config())
  return {field: value for field, value, _ in differences
          if field not in IGNORED_FIELDS and field != "train.seed"}


def describe(fields: dict) -> str:
  return ", ".join(f"{field}={value}" for field, value in fields.items()) or "stock"


def render(results: dict) -> str:
  """The markdown table of a results file (`results_files.write`) or of this call."""
  split = results["split"]
  lines = [f"{results['num_samples']:,} samples per run vs the {split} digits "
           f"({CONFIG_PATH}, one seed per row); {TARGETS}.", "",
           "| run | seed | step | classifier FD | confident (>= 0.9) | class TV |",
           "|---|---|---|---|---|---|"]
  rows = [{"name": f"real {_other(split)} digits", "seed": "-", "step": "-",
           **results["floor"]}]
  rows += [{"name": describe(run["fields"]), **run} for run in results["runs"]]
  for row in rows:
    lines.append(f"| {row['name']} | {row['seed']} | {row['step']} | "
                 f"{row['classifier_fd']:.2f} | {100 * row['confident_share']:.1f}% | "
                 f"{row['class_tv']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="*", help="GAN runs (train.gan workdirs)")
  parser.add_argument("--split", choices=("validation", "test"), default="test")
  parser.add_argument("--num-samples", type=int, default=5000)
  parser.add_argument("--batch-size", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, nargs="+", default=None,
                      help="checkpoints to score (default: the newest)")
  parser.add_argument("--classifier-workdir", default="runs/classifier")
  parser.add_argument("--save", metavar="STUDY", default=None,
                      help="also write <results-dir>/STUDY.{json,md}")
  parser.add_argument("--results-dir", default="results")
  args = parser.parse_args(argv)

  from tripjax import data as data_lib
  from tripjax.configs import digits_classifier
  from tripjax.metrics import digit_quality
  from tripjax.training import classifier as classifier_trainer
  from tripjax.training import trainers
  from tripjax.training import workdirs

  config = digits_classifier.get_config()
  config.train.progress_bar = False
  params, _ = classifier_trainer.get_or_train(config, args.classifier_workdir,
                                              log=lambda text: print(text, file=sys.stderr))
  reference = data_lib.load_dataset("digits", args.split, binarize=False).images
  other = data_lib.load_dataset("digits", _other(args.split), binarize=False).images
  floor = digit_quality.digit_quality(params, other, reference, batch_size=args.batch_size)
  runs = []
  for workdir in args.workdirs:
    config = workdirs.load_config(workdir)
    for step in args.steps or [None]:
      sampler = trainers.load_checkpoint_sampler(workdir, step)
      quality = digit_quality.digit_quality_of_sampler(
          sampler.sample_fn, reference, params, num_samples=args.num_samples,
          batch_size=args.batch_size, seed=args.seed)
      runs.append({"fields": changed_fields(config), "seed": config.train.seed,
                   "step": sampler.position.step, **quality._asdict(),
                   "commits": results_files.run_commits(workdir)})
      print(f"{workdir} step {sampler.position.step}: {quality}", file=sys.stderr)
  results = {"split": args.split, "num_samples": args.num_samples,
             "floor": floor._asdict(), "runs": runs}
  markdown = render(results)
  print(markdown)
  if args.save:
    results_files.write(args.save, script="benchmarks.gan_quickstart",
                        command=results_files.command_line("benchmarks.gan_quickstart",
                                                           argv),
                        markdown=markdown, results_dir=args.results_dir,
                        **{key: value for key, value in results.items() if key != "runs"},
                        runs=runs)
  return 0


if __name__ == "__main__":
  sys.exit(main())
