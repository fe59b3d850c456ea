"""Regenerates the GAN results table on the offline digits: FD, confident share, class TV.

  python -m benchmarks.gan_results                      # 5 priors x 3 seeds
  python -m benchmarks.gan_results --priors normal gmm_F gmm_L trip_F trip_L trip_L_pathwise
  python -m benchmarks.gan_results --epochs 10 --seeds 0 1 --priors normal trip_L

Every (prior, seed) is one full `python -m train.gan --config
configs/digits_wgangp_trip.py` run (the quickstart: WGAN-GP, n_critic 5, batch 32,
widths 32/16, one CPU device each) with
`--config.prior.kind`, `--config.prior.learnable`, `--config.train.seed` and
`--config.train.num_epochs` overridden, in its own workdir
`<workdir>/epochs_<E>/<prior>_seed<S>`. A run whose final checkpoint exists is skipped;
an interrupted one resumes from its last checkpoint (the trainer's resume), so running
the same command again finishes the table. The runs share one persistent XLA
compilation cache (`<workdir>/jax_cache`), so each prior's programs compile once.

Priors: "normal" (N(0, I)); "gmm_F"/"gmm_L" (factorized GMM, N = 10 per variable);
"trip_F"/"trip_L" (TRIP, N = 10, m = 40). F = `prior.learnable=False`: the prior keeps
its initialization (means uniform in [-1, 1], scales 1/N), as the paper's "fixed
randomly initialized" priors; L = trained by the score-function gradient of eq. 10.
These five are the default `--priors`; "trip_L_pathwise" is TRIP L with the pathwise
gradient of the means and scales (`prior.gradient_estimator=pathwise`).

Output: a markdown table of mean ± sd (sample sd, ddof = 1) over seeds of three scores
of the same 5,000 samples of each run's final generator against the grey-level test
digits, by the cached digit classifier of `--classifier-workdir` (trained first if
missing; `tripjax.metrics.digit_quality`): the classifier FD (`train.fid`'s metric;
lower is better), the share of samples the classifier gives >= 0.9 probability (higher
is better) and the total variation between the samples' and the test digits'
predicted-class histograms (lower is better; confident samples of a few classes do not
pass), with a first row of the real validation digits' scores (the floor). Printed and
written to `<workdir>/results.md`, every run's numbers to `<workdir>/results.json`; and
the committed results files README's table is, `<results-dir>/<study>.{json,md}`
(`benchmarks.results_files`), where <study> is gan_digits at the quickstart's epochs and
gan_digits_<E>epochs at any other `--epochs`. Each run's scores are appended to its
metrics.jsonl and reused by later calls.

Before starting each run the script waits while /tmp/tripjax_quiet exists (someone is
benchmarking on this machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks import results_files
from benchmarks import vae_results
from benchmarks.vae_results import FD_METRIC
from benchmarks.vae_results import FD_NUM_SAMPLES
from benchmarks.vae_results import mean_and_sd
from tripjax import data as data_lib
from tripjax.configs import digits_wgangp_trip

CONFIG_PATH = "configs/digits_wgangp_trip.py"
DEFAULT_EPOCHS = digits_wgangp_trip.get_config().train.num_epochs
CACHE_DIRNAME = "jax_cache"
STUDY = "gan_digits"  # results/gan_digits.json and .md
# name -> (prior.kind, prior.learnable, table label): the paper's rows; TRIP L with
# the pathwise prior gradient (`prior.gradient_estimator`, issue 20) next to them.
PRIOR_VARIANTS = {
    "normal": ("normal", True, "N(0, I)"),
    "gmm_F": ("gmm", False, "GMM F (factorized)"),
    "gmm_L": ("gmm", True, "GMM L (factorized)"),
    "trip_F": ("trip", False, "TRIP F"),
    "trip_L": ("trip", True, "TRIP L"),
    "trip_L_pathwise": ("trip", True, "TRIP L, pathwise gradient"),
}
PAPER_PRIORS = ("normal", "gmm_F", "gmm_L", "trip_F", "trip_L")  # the default rows
# Further --config. overrides of a variant.
VARIANT_FIELDS = {"trip_L_pathwise": {"prior.gradient_estimator": "pathwise"}}


def variant_fields(prior: str) -> dict:
  """{config field: value} that make a run of this variant."""
  kind, learnable, _ = PRIOR_VARIANTS[prior]
  return {"prior.kind": kind, "prior.learnable": learnable,
          **VARIANT_FIELDS.get(prior, {})}


def run_workdir(root: str, prior: str, seed: int, epochs: int) -> str:
  """The workdir of one run: <root>/epochs_<E>/<prior>_seed<S>."""
  return os.path.join(root, f"epochs_{epochs}", f"{prior}_seed{seed}")


def final_step(epochs: int) -> int:
  """The last step of an `epochs`-epoch run of the quickstart config."""
  config = digits_wgangp_trip.get_config()
  batches = data_lib.DIGITS_SPLIT_SIZES["train"] // config.train.batch_size
  return epochs * (batches // config.gan.n_critic)


def is_finished(workdir: str, epochs: int) -> bool:
  return os.path.isdir(os.path.join(workdir, "checkpoints", str(final_step(epochs))))


def train_command(prior: str, seed: int, epochs: int, workdir: str) -> list[str]:
  """The `python -m train.gan` command of one run (the same command resumes it)."""
  return [sys.executable, "-m", "train.gan", f"--config={CONFIG_PATH}",
          f"--workdir={workdir}",
          *[f"--config.{field}={value}" for field, value in variant_fields(prior).items()],
          f"--config.train.seed={seed}",
          f"--config.train.num_epochs={epochs}", "--config.train.progress_bar=False"]


QUALITY_SPLIT = "digit_quality"  # the metrics.jsonl records of `digit_quality_of_run`
CONFIDENT_METRIC = "confident_share"
TV_METRIC = "class_tv"
METRICS = (FD_METRIC, CONFIDENT_METRIC, TV_METRIC)


def summarize(runs: list[dict]) -> list[dict]:
  """Per prior (in PRIOR_VARIANTS order): seeds, mean and sd of each metric (a run
  without one, from before it was scored, leaves it out), lowest and highest FD."""
  rows = []
  for prior in PRIOR_VARIANTS:
    chosen = [run for run in runs if run["prior"] == prior]
    if not chosen:
      continue
    row = {"prior": prior, "label": PRIOR_VARIANTS[prior][2],
           "seeds": sorted(run["seed"] for run in chosen)}
    for metric in METRICS:
      if all(metric in run for run in chosen):
        row[f"{metric}_mean"], row[f"{metric}_sd"] = mean_and_sd(
            [run[metric] for run in chosen])
    values = [run[FD_METRIC] for run in chosen]
    row[f"{FD_METRIC}_min"], row[f"{FD_METRIC}_max"] = min(values), max(values)
    rows.append(row)
  return rows


def markdown_table(rows: list[dict], epochs: int, floor: dict | None = None,
                   learning_rates: tuple[float, ...] = ()) -> str:
  """The results as a markdown table; `floor`: the scores of real validation digits;
  `learning_rates`: the runs' Adam learning rates (named in the caption)."""
  rates = (" at Adam learning rate " + " and ".join(f"{rate:g}" for rate in learning_rates)
           if learning_rates else "")
  lines = [f"Offline digits (4,000 train grey-level MNIST digits), WGAN-GP, "
           f"{CONFIG_PATH}, {epochs} epochs ({final_step(epochs):,} generator steps)"
           f"{rates}; "
           f"mean ± sd over seeds of {FD_NUM_SAMPLES:,} samples of the final generator "
           f"scored against the 500 test digits by the digit classifier: classifier FD "
           f"(lower is better), the share of samples whose top class has probability "
           f">= 0.9 (higher is better), the total variation between the samples' and "
           f"the test digits' predicted-class histograms (lower is better).",
           "",
           "| prior | seeds | classifier FD | lowest – highest FD | confident (>= 0.9) "
           "| class TV |",
           "|---|---|---|---|---|---|"]
  if floor is not None:
    lines.append(f"| real validation digits (floor) | - | {floor[FD_METRIC]:.2f} | - | "
                 f"{100 * floor[CONFIDENT_METRIC]:.1f}% | {floor[TV_METRIC]:.3f} |")
  for row in rows:
    confident = results_files.mean_sd_cell(row, CONFIDENT_METRIC, scale=100, decimals=1)
    lines.append(f"| {row['label']} | {len(row['seeds'])} | "
                 f"{results_files.mean_sd_cell(row, FD_METRIC)} | "
                 f"{row[f'{FD_METRIC}_min']:.2f} – {row[f'{FD_METRIC}_max']:.2f} | "
                 f"{confident}{'%' if confident != 'n/a' else ''} | "
                 f"{results_files.mean_sd_cell(row, TV_METRIC, decimals=3)} |")
  return "\n".join(lines) + "\n"


def run_all(jobs: list[tuple[str, int]], *, root: str, epochs: int, parallel: int,
            poll_seconds: float = 2.0) -> None:
  """Trains every unfinished (prior, seed) run, `parallel` at a time."""
  vae_results.run_jobs(
      jobs, workdir_of=lambda job: run_workdir(root, *job, epochs),
      command_of=lambda job, workdir: train_command(*job, epochs, workdir),
      finished=lambda workdir: _final_record(workdir, epochs),
      summary=lambda record: f"step {record['step']}",
      cache_dir=os.path.join(root, CACHE_DIRNAME), parallel=parallel,
      poll_seconds=poll_seconds)


def _final_record(workdir: str, epochs: int) -> dict | None:
  return {"step": final_step(epochs)} if is_finished(workdir, epochs) else None


def digit_quality_of_run(workdir: str, step: int, classifier_params,
                        reference_images) -> dict:
  """Classifier FD, confident share and class TV of FD_NUM_SAMPLES samples of the
  checkpoint at `step` against `reference_images` (cached in the run's metrics.jsonl).

  The samples are those of `vae_results.classifier_fd_of_run` (sampling seed 0, batches
  of 500), so the FD is that function's."""
  for record in vae_results._read_records(workdir):
    if (record.get("split") == QUALITY_SPLIT and record.get("step") == step
        and record.get("num_samples") == FD_NUM_SAMPLES and record.get("seed") == 0):
      return {metric: record[metric] for metric in METRICS}
  from tripjax.metrics import digit_quality
  from tripjax.training import metric_writer
  from tripjax.training import trainers

  sampler = trainers.load_checkpoint_sampler(workdir, step=step)
  quality = digit_quality.digit_quality_of_sampler(
      sampler.sample_fn, reference_images, classifier_params,
      num_samples=FD_NUM_SAMPLES, batch_size=500, seed=0)
  values = dict(zip(METRICS, map(float, quality)))
  writer = metric_writer.MetricWriter(workdir)
  writer.write(sampler.position.step, sampler.position.epoch, QUALITY_SPLIT,
               {**values, "num_samples": FD_NUM_SAMPLES, "seed": 0})
  writer.close()
  return values


def real_digits_floor(classifier_params, reference_images) -> dict:
  """The three scores of the 500 real validation digits against `reference_images`."""
  from tripjax.metrics import digit_quality
  validation = data_lib.load_dataset("digits", "validation", binarize=False).images
  quality = digit_quality.digit_quality(classifier_params, validation, reference_images)
  return dict(zip(METRICS, map(float, quality)))


def collect(jobs: list[tuple[str, int]], *, root: str, epochs: int, classifier_params,
            reference_images) -> list[dict]:
  """The digit-quality scores of the final checkpoint of every finished run in `jobs`."""
  from tripjax.training import workdirs
  runs = []
  for prior, seed in jobs:
    workdir = run_workdir(root, prior, seed, epochs)
    step = final_step(epochs)
    if not is_finished(workdir, epochs):
      continue
    values = digit_quality_of_run(workdir, step, classifier_params, reference_images)
    print(f"{prior} seed {seed}: classifier FD {values[FD_METRIC]:.3f}, confident "
          f"{100 * values[CONFIDENT_METRIC]:.1f}%, class TV {values[TV_METRIC]:.3f}",
          flush=True)
    runs.append({"prior": prior, "fields": variant_fields(prior),
                 "learning_rate": workdirs.load_config(workdir).train.learning_rate,
                 "seed": seed, "workdir": workdir, "step": step, **values,
                 "commits": results_files.run_commits(workdir)})
  return runs


def render(results: dict) -> str:
  """The table of a results file (`results_files.write`) from its runs: its .md."""
  rates = sorted({run["learning_rate"] for run in results["runs"]
                  if "learning_rate" in run})
  return markdown_table(summarize(results["runs"]), results["epochs"],
                        results.get("floor"), tuple(rates))


def study_name(epochs: int) -> str:
  """The results file stem: gan_digits at the quickstart's epochs, else
  gan_digits_<E>epochs."""
  return STUDY if epochs == DEFAULT_EPOCHS else f"{STUDY}_{epochs}epochs"


def write_results_files(runs: list[dict], epochs: int, command: str,
                        results_dir: str = results_files.RESULTS_DIR,
                        floor: dict | None = None) -> str:
  """Writes results/<study_name(epochs)>.json and .md; returns the markdown."""
  chosen = [{key: value for key, value in run.items() if key != "workdir"}
            for run in runs]
  markdown = render({"epochs": epochs, "runs": chosen, "floor": floor})
  results_files.write(study_name(epochs), script="benchmarks.gan_results",
                      command=command, floor=floor,
                      markdown=markdown, results_dir=results_dir, config=CONFIG_PATH,
                      epochs=epochs, final_step=final_step(epochs),
                      classifier_fd_num_samples=FD_NUM_SAMPLES, runs=chosen)
  return markdown


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--priors", nargs="+", default=list(PAPER_PRIORS),
                      choices=list(PRIOR_VARIANTS))
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                      help="training epochs per run (the quickstart's by default)")
  parser.add_argument("--workdir", default="runs/gan_results",
                      help="root of the run workdirs and of results.md/json")
  parser.add_argument("--parallel", type=int, default=1,
                      help="runs at a time (1 on a 2-core machine)")
  parser.add_argument("--classifier-workdir", default="runs/classifier",
                      help="cached FD classifier (python -m train.train_classifier)")
  parser.add_argument("--results-dir", default=results_files.RESULTS_DIR,
                      help="where the committed results files go (<study>.json, .md)")
  args = parser.parse_args(argv)
  if args.parallel < 1 or args.epochs < 1:
    parser.error("--parallel and --epochs must be positive")
  # Seed-major: every prior's seed 0 first, so a partial sweep already compares priors.
  jobs = [(prior, seed) for seed in args.seeds for prior in args.priors]
  run_all(jobs, root=args.workdir, epochs=args.epochs, parallel=args.parallel)
  from tripjax.configs import digits_classifier  # JAX only once the runs are done.
  from tripjax.training import classifier
  classifier_params, _ = classifier.get_or_train(digits_classifier.get_config(),
                                                 args.classifier_workdir)
  test_digits = data_lib.load_dataset("digits", "test", binarize=False).images
  runs = collect(jobs, root=args.workdir, epochs=args.epochs,
                 classifier_params=classifier_params, reference_images=test_digits)
  rows = summarize(runs)
  table = write_results_files(
      runs, args.epochs, results_files.command_line("benchmarks.gan_results", argv),
      args.results_dir, floor=real_digits_floor(classifier_params, test_digits))
  print(table)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "results.md"), "w") as file:
    file.write(table)
  with open(os.path.join(args.workdir, "results.json"), "w") as file:
    json.dump({"config": CONFIG_PATH, "epochs": args.epochs, "seeds": args.seeds,
               "final_step": final_step(args.epochs),
               "classifier_fd_num_samples": FD_NUM_SAMPLES, "rows": rows,
               "runs": runs}, file, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
