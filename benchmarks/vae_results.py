"""Regenerates the VAE study on the offline digits (issue 10): two tables and the curves.

  nice -n 10 python -m benchmarks.vae_results --parallel 2     # everything (hours)
  python -m benchmarks.vae_results --tables main --seeds 0     # one seed of the priors

Every run is one `python -m train.vae --config configs/digits_vae_trip.py` (the
quickstart) for `--steps` steps (2,500 by default: where the N(0, I) test ELBO has
stopped improving, see below), seeded by `--config.train.seed`, with the test ELBO
evaluated every `--eval-every` steps for the curves, and the config overrides of its
variant (`VARIANTS`). Its workdir is `<workdir>/steps_<S>/<variant>_seed<k>`. A run
whose final evaluation (with IWAE-100) is in its metrics.jsonl is skipped; an
interrupted one resumes from its last checkpoint, so running the same command again
finishes the study.

* Main table (`MAIN_ROWS`): N(0, I); factorized GMM and TRIP (N = 10 Gaussians per
  latent, rank m = 20), F = `prior.learnable=False` (only the data-driven EM refits
  move the prior) and L = learned jointly with the VAE.
* Ablation table (`ABLATION_ROWS`), TRIP L with one setting changed: the refits (off,
  after epoch 1 only, on encoder means instead of posterior samples), the prior's
  learning rate (x0.1, x10), the rank (1 = GMM L, 5), the components (3) and the
  latent size (32, next to N(0, I) at 32). Rows equal to a default reuse its runs.

Output: per table a results file pair (`benchmarks.results_files`), the committed
files README's tables are: `<results-dir>/vae_digits.{json,md}` (main) and
`vae_digits_ablation.{json,md}`; and, printed and written under `--workdir`: results.md
(both tables: mean ± sample
sd over seeds of the final test ELBO, IWAE-100 (nats per digit, higher is better) and
the classifier FD of 5,000 prior samples (`tripjax.metrics.sampling`, in the feature
space of the digit classifier cached in `--classifier-workdir`; lower is better), and
the test ELBO at step 600 (read off the curve; about the 10 epochs of the README's
first table)),
curves.png and ablation_curves.png (test ELBO versus steps, mean ± sd band over seeds),
and results.json (every run's numbers and curve). Each run's FD is appended to its
metrics.jsonl and reused by later calls.

The run length: a single N(0, I) run of 12,000 steps evaluated every 250 steps peaked
at about 2,000-2,750 steps (test ELBO -95.8 to -96.0) and then declined (overfitting
the 4,000 digits: -98.3 at 4,000 steps, -101.5 at 5,000).

Before starting each run the script waits while /tmp/tripjax_quiet exists (someone is
benchmarking on this machine). With `--parallel` > 1 every run uses one CPU device
(JAX_NUM_CPU_DEVICES=1); all runs share a persistent XLA compilation cache in
`<workdir>/jax_cache` (unless JAX_COMPILATION_CACHE_DIR is set).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks import results_files

CONFIG_PATH = "configs/digits_vae_trip.py"
QUIET_FILE = "/tmp/tripjax_quiet"
DEFAULT_STEPS = 2500
DEFAULT_EVAL_EVERY = 100
METRICS_FILENAME = "metrics.jsonl"
IWAE_METRIC = "test_iwae_100"
ELBO_METRIC = "test_elbo"
FD_METRIC = "classifier_fd"
FD_NUM_SAMPLES = 5000
EARLY_METRIC = "test_elbo_early"  # the test ELBO at EARLY_STEP, read off the curve
EARLY_STEP = 600  # about the 10 epochs (620 steps) of the README's first table
STEPS_PER_EPOCH = 62  # 4,000 training digits in batches of 64 (the last 32 dropped)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One configuration of the study: a table label and its `--config.` overrides."""
  label: str
  overrides: tuple[tuple[str, Any], ...] = ()


VARIANTS = {
    "normal": Variant("N(0, I)", (("prior.kind", "normal"),)),
    "gmm_F": Variant("GMM F (factorized)",
                     (("prior.kind", "gmm"), ("prior.learnable", False))),
    "gmm_L": Variant("GMM L (factorized)", (("prior.kind", "gmm"),)),
    "trip_F": Variant("TRIP F", (("prior.learnable", False),)),
    "trip_L": Variant("TRIP L", ()),  # the quickstart config as it is
    # The paper's other baselines (issue 19): one diagonal mixture over the whole
    # space (d * N components), a learned full-covariance Gaussian, RealNVP flows.
    "full_gmm_F": Variant("full GMM F (the paper's GMM, d·N = 160 components)",
                          (("prior.kind", "full_gmm"), ("prior.learnable", False))),
    "full_gmm_L": Variant("full GMM L (the paper's GMM, d·N = 160 components)",
                          (("prior.kind", "full_gmm"),)),
    "full_gaussian_L": Variant("full Gaussian L", (("prior.kind", "full_gaussian"),)),
    "trip_L_flows": Variant("TRIP L + 4 flows", (("prior.flows", 4),)),
    "trip_L_refit_off": Variant("TRIP L, no refit",
                                (("prior.refit_every_epochs", 0),)),
    "trip_L_refit_once": Variant(
        "TRIP L, one refit (after epoch 1)",
        (("prior.refit_every_epochs", 0), ("prior.refit_at_steps", (STEPS_PER_EPOCH,)))),
    "trip_L_refit_means": Variant("TRIP L, refits on encoder means",
                                  (("prior.refit_on", "means"),)),
    "trip_L_prior_lr_0.1": Variant("TRIP L, prior lr ×0.1 (1e-4)",
                                   (("prior.learning_rate", 1e-4),)),
    "trip_L_prior_lr_10": Variant("TRIP L, prior lr ×10 (1e-2)",
                                  (("prior.learning_rate", 1e-2),)),
    "trip_L_rank_5": Variant("TRIP L, rank 5", (("prior.rank", 5),)),
    "trip_L_components_3": Variant("TRIP L, 3 components",
                                   (("prior.num_components", 3),)),
    "trip_L_latent_32": Variant("TRIP L, latent 32", (("model.latent_dim", 32),)),
    "normal_latent_32": Variant("N(0, I), latent 32",
                                (("prior.kind", "normal"), ("model.latent_dim", 32))),
}

MAIN_ROWS = ("normal", "gmm_F", "gmm_L", "trip_F", "trip_L", "full_gmm_F", "full_gmm_L",
             "full_gaussian_L", "trip_L_flows")

# (what is varied, [(variant, row label)]); the quickstart's values are marked.
ABLATION_ROWS = (
    ("refits", [("trip_L_refit_off", "off"),
                ("trip_L_refit_once", "once, after epoch 1"),
                ("trip_L", "after epoch 1, then every 5 epochs (default)"),
                ("trip_L_refit_means", "every 5 epochs, fitted to encoder means")]),
    ("prior learning rate", [("trip_L_prior_lr_0.1", "×0.1 (1e-4)"),
                             ("trip_L", "×1 (1e-3, default)"),
                             ("trip_L_prior_lr_10", "×10 (1e-2)")]),
    ("rank m", [("gmm_L", "1 (= factorized GMM L)"), ("trip_L_rank_5", "5"),
                ("trip_L", "20 (default)")]),
    ("components N", [("trip_L_components_3", "3"), ("trip_L", "10 (default)")]),
    ("latent size", [("trip_L", "16 (default)"), ("trip_L_latent_32", "32"),
                     ("normal", "16, N(0, I)"), ("normal_latent_32", "32, N(0, I)")]),
)

TABLES = ("main", "ablation")
# table -> the study name of its results files (results/<study>.json and .md).
STUDIES = {"main": "vae_digits", "ablation": "vae_digits_ablation"}


def table_variants(table: str) -> list[str]:
  """The variants of a table, each once, in row order."""
  if table == "main":
    return list(MAIN_ROWS)
  names = [name for _, rows in ABLATION_ROWS for name, _ in rows]
  return list(dict.fromkeys(names))


def run_workdir(root: str, variant: str, seed: int, steps: int) -> str:
  """The workdir of one run: <root>/steps_<S>/<variant>_seed<k>."""
  return os.path.join(root, f"steps_{steps}", f"{variant}_seed{seed}")


def _flag_value(value: Any) -> str:
  if isinstance(value, tuple):
    return "(" + ",".join(str(item) for item in value) + ",)"
  return str(value)


def train_command(variant: str, seed: int, steps: int, workdir: str,
                  eval_every: int = DEFAULT_EVAL_EVERY) -> list[str]:
  """The `python -m train.vae` command of one run (the same command resumes it)."""
  overrides = [f"--config.{field}={_flag_value(value)}"
               for field, value in VARIANTS[variant].overrides]
  return [sys.executable, "-m", "train.vae", f"--config={CONFIG_PATH}",
          f"--workdir={workdir}", *overrides, f"--config.train.seed={seed}",
          f"--config.train.num_steps={steps}", f"--config.eval.every_steps={eval_every}",
          "--config.eval.every_epochs=0", "--config.train.progress_bar=False"]


def _read_records(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILENAME)
  if not os.path.exists(path):
    return []
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


def final_eval(workdir: str, steps: int) -> dict | None:
  """The run's evaluation record after its last step (with IWAE-100), or None."""
  for record in reversed(_read_records(workdir)):
    if (record.get("split") == "eval" and record.get("step") == steps
        and IWAE_METRIC in record):
      return record
  return None


def elbo_curve(workdir: str) -> list[tuple[int, float]]:
  """(step, test ELBO) of every evaluation of a run, in step order."""
  points = {record["step"]: record[ELBO_METRIC] for record in _read_records(workdir)
            if record.get("split") == "eval" and ELBO_METRIC in record}
  return sorted(points.items())


def wait_while_quiet(quiet_file: str = QUIET_FILE, poll_seconds: float = 20.0) -> None:
  """Blocks while `quiet_file` exists (the machine is being used for timings)."""
  announced = False
  while os.path.exists(quiet_file):
    if not announced:
      print(f"waiting: {quiet_file} exists", flush=True)
      announced = True
    time.sleep(poll_seconds)


def mean_and_sd(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  mean = statistics.fmean(values)
  sd = statistics.stdev(values) if len(values) > 1 else 0.0
  return mean, sd


def summarize(runs: list[dict], variants: list[str] | None = None) -> list[dict]:
  """Per variant (in `variants` order; default: every variant with runs): seeds and the
  mean and sd of test ELBO, IWAE-100 and classifier FD (when every run has it).

  Args:
    runs: records {"variant", "seed", "test_elbo", "test_iwae_100", ...}.
  """
  if variants is None:
    variants = [name for name in VARIANTS if any(run["variant"] == name for run in runs)]
  rows = []
  for variant in variants:
    chosen = [run for run in runs if run["variant"] == variant]
    if not chosen:
      continue
    row = {"variant": variant, "label": VARIANTS[variant].label,
           "seeds": sorted(run["seed"] for run in chosen)}
    for metric in (ELBO_METRIC, IWAE_METRIC, FD_METRIC, EARLY_METRIC):
      values = [run.get(metric) for run in chosen]
      if all(value is not None for value in values):
        row[f"{metric}_mean"], row[f"{metric}_sd"] = mean_and_sd(values)
    rows.append(row)
  return rows


def _columns(rows: list[dict]) -> list[tuple[str, str]]:
  columns = [(ELBO_METRIC, "test ELBO"), (IWAE_METRIC, "test IWAE-100")]
  if any(f"{FD_METRIC}_mean" in row for row in rows):
    columns.append((FD_METRIC, f"classifier FD ({FD_NUM_SAMPLES:,} samples)"))
  if any(f"{EARLY_METRIC}_mean" in row for row in rows):
    columns.append((EARLY_METRIC, f"test ELBO at step {EARLY_STEP}"))
  return columns


def _cells(row: dict, columns: list[tuple[str, str]]) -> list[str]:
  """'mean ± sd' per column; the value alone for one seed (no spread to show)."""
  return [results_files.mean_sd_cell(row, metric) for metric, _ in columns]


def _caption(steps: int, what: str) -> str:
  return (f"{what}: offline digits (4,000 train / 500 test binarized MNIST digits), "
          f"{CONFIG_PATH}, {steps:,} steps of batch 64 ({steps / STEPS_PER_EPOCH:.0f} "
          f"epochs); mean ± sd over seeds; ELBO and IWAE in nats per digit (higher is "
          f"better), classifier FD of prior samples (lower is better).")


def markdown_table(rows: list[dict], steps: int) -> str:
  """The main table (one row per prior of `MAIN_ROWS`; "not run" where no run of it
  has finished) as markdown."""
  by_variant = {row["variant"]: row for row in rows}
  columns = _columns(rows)
  lines = [_caption(steps, "Priors"), "",
           "| prior | seeds | " + " | ".join(title for _, title in columns) + " |",
           "|---" * (len(columns) + 2) + "|"]
  for variant in MAIN_ROWS:
    row = by_variant.get(variant)
    if row is None:
      lines.append(f"| {VARIANTS[variant].label} | 0 | "
                   + " | ".join(["not run"] * len(columns)) + " |")
    else:
      lines.append(f"| {row['label']} | {len(row['seeds'])} | "
                   + " | ".join(_cells(row, columns)) + " |")
  return "\n".join(lines) + "\n"


def ablation_table(rows: list[dict], steps: int) -> str:
  """The ablation table: one row per (what is varied, value), from summarized rows."""
  by_variant = {row["variant"]: row for row in rows}
  columns = _columns(rows)
  lines = [_caption(steps, "Ablations of TRIP L (N = 10, m = 20, latent 16, refits "
                           "on posterior samples after epoch 1 and every 5 epochs, "
                           "prior lr 1e-3)"), "",
           "| varied | value | seeds | " + " | ".join(title for _, title in columns)
           + " |", "|---" * (len(columns) + 3) + "|"]
  for varied, entries in ABLATION_ROWS:
    for variant, value in entries:
      row = by_variant.get(variant)
      if row is None:
        lines.append(f"| {varied} | {value} | 0 | " + " | ".join(
            ["not run"] * len(columns)) + " |")
      else:
        lines.append(f"| {varied} | {value} | {len(row['seeds'])} | "
                     + " | ".join(_cells(row, columns)) + " |")
  return "\n".join(lines) + "\n"


def mean_curves(runs: list[dict], variants: list[str]) -> dict[str, dict]:
  """Per variant: the steps every run of it evaluated at, and the mean and sample sd
  of the test ELBO there over its runs: {variant: {"steps", "mean", "sd", "seeds"}}."""
  curves = {}
  for variant in variants:
    chosen = [dict(run["curve"]) for run in runs if run["variant"] == variant]
    if not chosen:
      continue
    steps = sorted(set.intersection(*(set(curve) for curve in chosen)))
    stats = [mean_and_sd([curve[step] for curve in chosen]) for step in steps]
    curves[variant] = {"steps": steps, "mean": [mean for mean, _ in stats],
                       "sd": [sd for _, sd in stats], "seeds": len(chosen)}
  return curves


def plot_curves(curves: dict[str, dict], path: str, title: str,
                ylim: tuple[float, float] | None = None,
                labels: dict[str, str] | None = None,
                xlabel: str = "training step (batch 64)",
                ylabel: str = "test ELBO (nats per digit)") -> None:
  """Test ELBO versus steps, one line per variant with a ± sd band, as a PNG
  (`labels`: variant -> legend text; default this study's `VARIANTS` labels)."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot

  def label_of(variant):
    return labels[variant] if labels is not None else VARIANTS[variant].label

  figure, axes = pyplot.subplots(figsize=(7, 4.2), dpi=110)
  for variant, curve in curves.items():
    mean, sd = curve["mean"], curve["sd"]
    line, = axes.plot(curve["steps"], mean, linewidth=1.4,
                      label=f"{label_of(variant)} ({curve['seeds']} seeds)")
    axes.fill_between(curve["steps"], [m - s for m, s in zip(mean, sd)],
                      [m + s for m, s in zip(mean, sd)], color=line.get_color(),
                      alpha=0.2, linewidth=0)
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  axes.set_title(title, fontsize=10)
  if ylim is not None:
    axes.set_ylim(*ylim)
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7, loc="lower right")
  figure.tight_layout()
  figure.savefig(path)
  pyplot.close(figure)


def classifier_fd_of_run(workdir: str, step: int, classifier_params) -> float:
  """Classifier FD of the checkpoint at `step` (cached in the run's metrics.jsonl)."""
  for record in _read_records(workdir):
    if (record.get("split") == FD_METRIC and record.get("step") == step
        and record.get("num_samples") == FD_NUM_SAMPLES and record.get("seed") == 0):
      return record[FD_METRIC]
  # JAX only in the parent process when FD is wanted.
  from tripjax.metrics import sampling
  from tripjax.training import metric_writer
  from tripjax.training import trainers

  sample_fn, reference, position = trainers.load_checkpoint_sampler(workdir, step=step)
  value = sampling.classifier_fd_from_sampler(sample_fn, reference, classifier_params,
                                              num_samples=FD_NUM_SAMPLES, batch_size=500,
                                              seed=0, progress=False)
  writer = metric_writer.MetricWriter(workdir)
  writer.write(position.step, position.epoch, FD_METRIC,
               {FD_METRIC: value, "num_samples": FD_NUM_SAMPLES, "seed": 0})
  writer.close()
  return value


def run_all(jobs: list[tuple[str, int]], *, root: str, steps: int, parallel: int,
            eval_every: int = DEFAULT_EVAL_EVERY, quiet_file: str = QUIET_FILE,
            poll_seconds: float = 2.0) -> None:
  """Trains every unfinished (variant, seed) run, `parallel` at a time."""

  def summary(record):
    return (f"test ELBO {record[ELBO_METRIC]:.2f}, "
            f"IWAE-100 {record[IWAE_METRIC]:.2f}")

  run_jobs(jobs, workdir_of=lambda job: run_workdir(root, *job, steps),
           command_of=lambda job, workdir: train_command(*job, steps, workdir,
                                                         eval_every),
           finished=lambda workdir: final_eval(workdir, steps), summary=summary,
           cache_dir=os.path.join(root, "jax_cache"), parallel=parallel,
           quiet_file=quiet_file, poll_seconds=poll_seconds)


def run_jobs(jobs: list[tuple], *, workdir_of, command_of, finished, summary,
             cache_dir: str, parallel: int, quiet_file: str = QUIET_FILE,
             poll_seconds: float = 2.0) -> None:
  """Runs the training command of every unfinished job, `parallel` at a time (the
  sweep runner of every results script).

  Args:
    jobs: tuples naming the runs, the seed last, e.g. (variant, seed), started in
      this order.
    workdir_of: job -> its workdir (the run's output is appended to its train.log).
    command_of: (job, workdir) -> the command (the same command resumes a run).
    finished: workdir -> the run's final record, or None while it is unfinished.
    summary: final record -> the text printed when the run is done.
    cache_dir: the persistent XLA compilation cache the runs share (unless
      JAX_COMPILATION_CACHE_DIR is set): most runs compile the same programs.
    parallel: runs at a time; above 1 each run gets one CPU device.

  Raises:
    RuntimeError: a run failed (the others are stopped; rerunning resumes them).
  """
  def name(job):
    return " ".join(map(str, job[:-1])) + f" seed {job[-1]}"

  pending = [job for job in jobs if finished(workdir_of(job)) is None]
  environment = dict(os.environ)
  if parallel > 1:
    environment["JAX_NUM_CPU_DEVICES"] = "1"
  environment.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.abspath(cache_dir))
  environment.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  running: list[tuple[tuple, subprocess.Popen, float]] = []
  try:
    while pending or running:
      while pending and len(running) < parallel:
        wait_while_quiet(quiet_file)
        job = pending.pop(0)
        workdir = workdir_of(job)
        os.makedirs(workdir, exist_ok=True)
        results_files.record_start(workdir)
        with open(os.path.join(workdir, "train.log"), "a") as log:
          print(f"start {name(job)} -> {workdir}", flush=True)
          process = subprocess.Popen(command_of(job, workdir), stdout=log,
                                     stderr=subprocess.STDOUT, env=environment)
        running.append((job, process, time.perf_counter()))
      time.sleep(poll_seconds)
      for entry in list(running):
        job, process, start = entry
        if process.poll() is None:
          continue
        running.remove(entry)
        workdir = workdir_of(job)
        record = finished(workdir)
        if process.returncode != 0 or record is None:
          raise RuntimeError(
              f"run {name(job)} failed (exit {process.returncode}); see "
              f"{os.path.join(workdir, 'train.log')}. Running this command again "
              f"resumes every unfinished run from its last checkpoint.")
        print(f"done  {name(job)} in {time.perf_counter() - start:.0f} s: "
              f"{summary(record)}", flush=True)
  finally:  # On an error or Ctrl-C, stop the other runs too; they resume next time.
    for _, process, _ in running:
      if process.poll() is None:
        process.terminate()
        process.wait()


def collect(jobs: list[tuple[str, int]], *, root: str, steps: int,
            classifier_params=None) -> list[dict]:
  """The final evaluation and ELBO curve of every finished run in `jobs`, with its
  classifier FD if `classifier_params` is given; unfinished runs are left out."""
  runs = []
  for variant, seed in jobs:
    workdir = run_workdir(root, variant, seed, steps)
    record = final_eval(workdir, steps)
    if record is None:
      continue
    run = {"variant": variant,
           "fields": {field: list(value) if isinstance(value, tuple) else value
                      for field, value in VARIANTS[variant].overrides},
           "seed": seed, "workdir": workdir, "step": record["step"],
           ELBO_METRIC: record[ELBO_METRIC], IWAE_METRIC: record[IWAE_METRIC],
           "test_kl": record.get("test_kl"),
           "test_log_likelihood": record.get("test_log_likelihood"),
           "curve": elbo_curve(workdir),
           "commits": results_files.run_commits(workdir)}
    run[EARLY_METRIC] = dict(run["curve"]).get(EARLY_STEP)
    if classifier_params is not None:
      run[FD_METRIC] = classifier_fd_of_run(workdir, record["step"], classifier_params)
    runs.append(run)
  return runs


def render(results: dict) -> str:
  """The table of a results file (`results_files.write`) from its runs: the text of
  its .md."""
  rows = summarize(results["runs"], table_variants(results["table"]))
  if results["table"] == "main":
    return markdown_table(rows, results["steps"])
  return ablation_table(rows, results["steps"])


def write_results_files(table: str, runs: list[dict], steps: int, command: str,
                        results_dir: str = results_files.RESULTS_DIR) -> str:
  """Writes the table's results files (`STUDIES`); returns its markdown."""
  chosen = [{key: value for key, value in run.items() if key != "workdir"}
            for run in runs if run["variant"] in table_variants(table)]
  results = {"table": table, "steps": steps, "config": CONFIG_PATH, "runs": chosen}
  markdown = render(results)
  results_files.write(STUDIES[table], script="benchmarks.vae_results", command=command,
                      markdown=markdown, results_dir=results_dir, table=table,
                      steps=steps, config=CONFIG_PATH, runs=chosen)
  return markdown


def make_jobs(tables: list[str], seeds: list[int]) -> list[tuple[str, int]]:
  """(variant, seed) of every run the tables need, each once, seed-major within each
  table (every row's seed 0 first, so a partial sweep already compares rows)."""
  jobs = [(variant, seed) for table in tables for seed in seeds
          for variant in table_variants(table)]
  return list(dict.fromkeys(jobs))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                      help="train only these variants' runs (to order a partial "
                           "sweep); the tables show every finished run")
  parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                      help="training steps per run")
  parser.add_argument("--eval-every", type=int, default=DEFAULT_EVAL_EVERY,
                      help="test ELBO every this many steps (the curves)")
  results_files.add_sweep_arguments(parser, workdir="runs/results",
                                    workdir_help="root of the run workdirs and outputs")
  parser.add_argument("--classifier-fd", action=argparse.BooleanOptionalAction,
                      default=True, help="add the classifier FD of prior samples")
  parser.add_argument("--classifier-workdir", default="runs/classifier",
                      help="cached FD classifier (python -m train.train_classifier)")
  args = parser.parse_args(argv)
  if args.parallel < 1 or args.steps < 1 or args.eval_every < 1:
    parser.error("--parallel, --steps and --eval-every must be positive")
  jobs = make_jobs(args.tables, args.seeds)
  # `kill` stops the runs too (they resume next time), as Ctrl-C does.
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  if args.train:
    to_train = [job for job in jobs if not args.variants or job[0] in args.variants]
    run_all(to_train, root=args.workdir, steps=args.steps, parallel=args.parallel,
            eval_every=args.eval_every)
  classifier_params = None
  if args.classifier_fd:
    from tripjax.configs import digits_classifier
    from tripjax.training import classifier
    classifier_params, _ = classifier.get_or_train(digits_classifier.get_config(),
                                                   args.classifier_workdir)
  runs = collect(jobs, root=args.workdir, steps=args.steps,
                 classifier_params=classifier_params)
  os.makedirs(args.workdir, exist_ok=True)
  outputs, results = [], {"config": CONFIG_PATH, "steps": args.steps,
                          "seeds": args.seeds, "runs": runs}
  for table in args.tables:
    rows = summarize(runs, table_variants(table))
    results[f"{table}_rows"] = rows
    curve_variants = (list(MAIN_ROWS) if table == "main" else
                      ["trip_L", "trip_L_refit_off", "trip_L_refit_once",
                       "trip_L_refit_means", "trip_L_prior_lr_10"])
    curves = mean_curves(runs, curve_variants)
    png = "curves.png" if table == "main" else "ablation_curves.png"
    if curves:
      plot_curves(curves, os.path.join(args.workdir, png),
                  f"Offline digits, test ELBO during training ({table} runs)",
                  ylim=(-130, -90))
    text = write_results_files(
        table, runs, args.steps,
        results_files.command_line("benchmarks.vae_results", argv),
        args.results_dir)
    outputs.append(text + (f"\n![test ELBO versus steps]({png})\n" if curves else ""))
  report = "\n".join(outputs)
  print(report)
  with open(os.path.join(args.workdir, "results.md"), "w") as file:
    file.write(report)
  with open(os.path.join(args.workdir, "results.json"), "w") as file:
    json.dump(results, file, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
