"""Why CVAE-TRIP violates requests, one setting at a time (issue 21, item 3).

  python -m benchmarks.cvae_ablation --parallel 2     # resumes; --no-train: the table

Every variant is CVAE-TRIP (`model.kind=trip`) trained by `python -m train.cvae
--config configs/digits_cvae_trip.py` with the variant's overrides, evaluated on the
VALIDATION split (`eval.split=validation`: the violation rates, the diversity and the
bound), so that the choice of the digits config is made without the test digits; the
table of `benchmarks.cvae_results` then reports test. Each variant pins every field
it is about (epochs and `train.attribute_weight` included), so its runs mean the same
whatever the config's defaults are. A run lives in
`<workdir>/<variant>/epochs_<E>/trip_hidden<P>_seed<S>` (`cvae_results.run_workdir`),
is skipped when finished and resumes when interrupted; all share the digit classifier
of `--classifier-workdir`.

Output: `<results-dir>/cvae_digits_ablation.{json,md}` (`benchmarks.results_files`), one
row per (variant, hidden fraction) with the seeds it has: mean ± sd of the violation
rates (single attributes, the digit alone, subsets), the diversity TV of single
requests, and the validation bound on log p(x | y).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

from benchmarks import cvae_results
from benchmarks import results_files
from benchmarks import vae_results
from benchmarks.vae_results import mean_and_sd

STUDY = "cvae_digits_ablation"
SPLIT = "validation"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One setting of CVAE-TRIP: `varied` set to `value` by `overrides` (FIELD=VALUE),
  trained `epochs` epochs, at the (hidden fraction, seed) pairs of `runs`."""
  slug: str
  varied: str
  value: str
  epochs: int
  overrides: tuple[str, ...]
  runs: tuple[tuple[float, int], ...]

  def fields(self) -> dict[str, str]:
    """{field: value} of every override its runs get (the split, w pinned)."""
    fields = {"eval.split": SPLIT, "train.attribute_weight": "1.0"}
    fields.update(field.split("=", 1) for field in self.overrides)
    return fields

  def extra(self) -> tuple[str, ...]:
    """`fields` as FIELD=VALUE overrides (`cvae_results.train_command`'s extra)."""
    return tuple(f"{field}={value}" for field, value in self.fields().items())


def _seeds(*seeds: int, hidden: float = 0.0) -> tuple[tuple[float, int], ...]:
  return tuple((hidden, seed) for seed in seeds)


_BOTH = _seeds(0, 1, 2) + _seeds(0, 1, hidden=0.5)
# The settings tried, in the order of the table: first one change to the 20-epoch
# quickstart of issue 9 (prior learning rate 1e-2, rank 20, latent 16, refits every 5
# epochs, permutation seed 0), then longer training, then the weight of the attribute
# term on top of 40 epochs.
VARIANTS = (
    Variant("default", "nothing (20 epochs, w = 1)", "-", 20, (), _seeds(0)),
    Variant("prior_lr_1e-3", "prior learning rate", "1e-3", 20,
            ("prior.learning_rate=0.001",), _seeds(0)),
    Variant("prior_lr_3e-2", "prior learning rate", "3e-2", 20,
            ("prior.learning_rate=0.03",), _seeds(0)),
    Variant("prior_lr_1e-1", "prior learning rate", "1e-1", 20,
            ("prior.learning_rate=0.1",), _seeds(0)),
    Variant("rank_40", "rank m", "40", 20, ("prior.rank=40",), _seeds(0)),
    Variant("refits_off", "refits", "off", 20, ("prior.refit_every_epochs=0",),
            _seeds(0)),
    Variant("permutation_1", "ring order", "permutation seed 1", 20,
            ("prior.permutation_seed=1",), _seeds(0)),
    Variant("latent_8", "latent size", "8", 20, ("model.latent_dim=8",), _seeds(0)),
    Variant("latent_32", "latent size", "32", 20, ("model.latent_dim=32",), _seeds(0)),
    Variant("epochs_40", "epochs", "40", 40, (), _BOTH),
    Variant("epochs_80", "epochs", "80", 80, (), _seeds(0, 1)),
    Variant("epochs_40_rank_40", "40 epochs, rank m", "40", 40, ("prior.rank=40",),
            _seeds(0)),
    Variant("epochs_40_permutation_1", "40 epochs, ring order", "permutation seed 1",
            40, ("prior.permutation_seed=1",), _seeds(0)),
    Variant("epochs_40_latent_8", "40 epochs, latent size", "8", 40,
            ("model.latent_dim=8",), _seeds(0)),
    Variant("epochs_40_weight_4", "40 epochs, attribute weight w", "4", 40,
            ("train.attribute_weight=4.0",), _BOTH),
    Variant("epochs_40_weight_8", "40 epochs, attribute weight w", "8", 40,
            ("train.attribute_weight=8.0",), _seeds(0)),
    Variant("epochs_40_weight_16", "40 epochs, attribute weight w", "16", 40,
            ("train.attribute_weight=16.0",), _BOTH),
    Variant("epochs_40_weight_64", "40 epochs, attribute weight w", "64", 40,
            ("train.attribute_weight=64.0",), _seeds(0)),
)
VARIANTS_BY_SLUG = {variant.slug: variant for variant in VARIANTS}

# (final record field, header); the rates in percent.
COLUMNS = (
    (cvae_results.VIOLATION_SINGLE, "violation rate, single attributes (%)"),
    ("violation_single_digit", "of which digit= requests (%)"),
    (cvae_results.VIOLATION_SUBSET, "violation rate, subsets of 2-3 (%)"),
    (cvae_results.DIVERSITY_SINGLE, "diversity TV, single attributes"),
    (f"{SPLIT}_bound_x_given_y", f"{SPLIT} bound log p(x \\| y)"),
)
PERCENT = {cvae_results.VIOLATION_SINGLE, "violation_single_digit",
           cvae_results.VIOLATION_SUBSET}


def jobs(variants=VARIANTS) -> list[tuple[str, float, int]]:
  """(variant slug, hidden fraction, seed), seed-major."""
  chosen = [(variant.slug, hidden, seed) for variant in variants
            for hidden, seed in variant.runs]
  return sorted(chosen, key=lambda job: job[2])


def run_workdir(root: str, job: tuple[str, float, int]) -> str:
  """The workdir of a job (variant slug, hidden fraction, seed)."""
  slug, hidden, seed = job
  return cvae_results.run_workdir(os.path.join(root, slug), "trip", hidden, seed,
                                  VARIANTS_BY_SLUG[slug].epochs)


def run_all(job_list, *, root: str, parallel: int, classifier_dir: str) -> None:
  """Trains every unfinished run of `job_list` (the classifier must exist)."""
  vae_results.run_jobs(
      job_list, workdir_of=lambda job: run_workdir(root, job),
      command_of=lambda job, workdir: cvae_results.train_command(
          "trip", job[1], job[2], VARIANTS_BY_SLUG[job[0]].epochs, workdir,
          classifier_dir, VARIANTS_BY_SLUG[job[0]].extra()),
      finished=cvae_results.final_eval, summary=cvae_results.summary_line,
      cache_dir=os.path.join(root, cvae_results.CACHE_DIRNAME), parallel=parallel)


def collect(job_list, *, root: str) -> list[dict]:
  """The final validation record of every finished run."""
  runs = []
  for job in job_list:
    workdir = run_workdir(root, job)
    record = cvae_results.final_eval(workdir)
    if record is None:
      continue
    slug, hidden, seed = job
    variant = VARIANTS_BY_SLUG[slug]
    fields: dict = dict(variant.fields())
    fields.update({"model.kind": "trip", "data.hide_attribute_fraction": hidden,
                   "train.num_epochs": variant.epochs})
    run = {"variant": slug, "hidden": hidden, "fields": fields, "seed": seed,
           "step": record["step"], "epoch": record.get("epoch"),
           "commits": results_files.run_commits(workdir)}
    run.update({name: value for name, value in record.items()
                if name.startswith(("violation_", "diversity_", f"{SPLIT}_",
                                    "classifier_accuracy"))})
    runs.append(run)
  return runs


def render(results: dict) -> str:
  """The markdown table of a results file (`results_files.write`) from its runs."""
  runs = results["runs"]
  lines = [
      "CVAE-TRIP on the offline digits, one setting changed at a time from "
      f"{cvae_results.CONFIG_PATH} as it was for issue 9 (20 epochs, prior learning "
      "rate 1e-2, rank 20, latent 16, refits every 5 epochs, attribute weight w = 1: "
      "eq. 14), every number on the VALIDATION split (500 digits held out of the "
      "training set); mean ± sd over the seeds listed. w weights the attribute term "
      "log p(y_obs|z) in the trained objective (`train.attribute_weight`); the bound "
      "in the last column is eq. 14's whatever w. Violation rates as in the main "
      "table (2,000 random requests per kind, read by the shared digit classifier); "
      "'of which digit=': the single requests of a digit value alone.",
      "",
      "| varied | value | hidden labels | epochs | seeds | "
      + " | ".join(title for _, title in COLUMNS) + " |",
      "|---" * (len(COLUMNS) + 5) + "|"]
  for variant in VARIANTS:
    for hidden in sorted({hidden for hidden, _ in variant.runs}):
      chosen = [run for run in runs
                if run["variant"] == variant.slug and run["hidden"] == hidden]
      if not chosen:
        continue
      row: dict = {"seeds": sorted(run["seed"] for run in chosen)}
      for metric, _ in COLUMNS:
        values = [run.get(metric) for run in chosen]
        if all(isinstance(value, (int, float)) for value in values):
          row[f"{metric}_mean"], row[f"{metric}_sd"] = mean_and_sd(values)
      cells = [results_files.mean_sd_cell(row, metric, scale=100, decimals=1)
               if metric in PERCENT else results_files.mean_sd_cell(row, metric)
               for metric, _ in COLUMNS]
      lines.append(f"| {variant.varied} | {variant.value} | "
                   f"{cvae_results.hidden_label(hidden)} | {variant.epochs} | "
                   f"{', '.join(map(str, row['seeds']))} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  results_files.add_sweep_arguments(parser, workdir="runs/cvae_ablation")
  parser.add_argument("--classifier-workdir", default="runs/cvae_results/classifier",
                      help="the digit classifier of the violation rates (trained by "
                           "benchmarks.cvae_results, or python -m "
                           "train.train_classifier --workdir DIR)")
  parser.add_argument("--variants", nargs="+", choices=list(VARIANTS_BY_SLUG),
                      help="only these variants (default: all)")
  args = parser.parse_args(argv)
  if args.parallel < 1:
    parser.error("--parallel must be positive")
  if cvae_results.classifier_ready(args.classifier_workdir) is None:
    parser.error(f"no digit classifier in {args.classifier_workdir}: train it with "
                 f"python -m train.train_classifier --workdir "
                 f"{args.classifier_workdir}")
  variants = [VARIANTS_BY_SLUG[slug] for slug in args.variants or VARIANTS_BY_SLUG]
  job_list = jobs(variants)
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  if args.train:
    run_all(job_list, root=args.workdir, parallel=args.parallel,
            classifier_dir=args.classifier_workdir)
  runs = collect(job_list, root=args.workdir)
  if not runs:
    parser.error(f"no finished run under {args.workdir}; nothing written")
  markdown = render({"runs": runs})
  results_files.write(STUDY, script="benchmarks.cvae_ablation",
                      command=results_files.command_line(
                          "benchmarks.cvae_ablation", argv),
                      markdown=markdown, runs=runs, results_dir=args.results_dir,
                      config=cvae_results.CONFIG_PATH,
                      classifier_workdir=args.classifier_workdir)
  print(markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
