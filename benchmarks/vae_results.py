"""Regenerates the VAE results table on the offline digits (issue 4): test ELBO, IWAE-100.

  python -m benchmarks.vae_results                       # 5 priors x 3 seeds, 20 epochs
  python -m benchmarks.vae_results --epochs 10 --seeds 0 1 --priors normal trip_L

Every (prior, seed) is one full `python -m train.vae --config configs/digits_vae_trip.py`
run (the quickstart) with `--config.prior.kind`, `--config.prior.learnable`,
`--config.train.seed` and `--config.train.num_epochs` overridden, in its own workdir
`<workdir>/epochs_<E>/<prior>_seed<S>`. A run whose final evaluation is already in its
metrics.jsonl is skipped; an interrupted one resumes from its last checkpoint (the
trainer's resume), so running the same command again finishes the table.

Priors: "normal" (N(0, I)); "gmm_F"/"gmm_L" (factorized GMM, N = 10 per variable);
"trip_F"/"trip_L" (TRIP, N = 10, m = 20). F = `prior.learnable=False`: the prior gets
no gradient updates, only the data-driven EM refits (after epoch 1 and every 5 epochs),
as in the paper; L = trained jointly with the VAE.

Output: a markdown table of mean ± sd (sample sd, ddof = 1) over seeds of the final test
ELBO and IWAE-100 (nats per digit, higher is better) and, unless `--no-classifier-fd`,
the classifier FD of 5,000 prior samples of the final checkpoint (`train.fid`: decoder
means vs the grey-level test split, in the feature space of the cached digit classifier
of `--classifier-workdir`, trained first if missing; lower is better), printed and
written to `<workdir>/results.md`, plus every run's numbers in `<workdir>/results.json`.
Each run's FD is appended to its metrics.jsonl and reused by later calls.

Before starting each run the script waits while /tmp/tripjax_quiet exists (someone is
benchmarking on this machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIG_PATH = "configs/digits_vae_trip.py"
QUIET_FILE = "/tmp/tripjax_quiet"
DEFAULT_EPOCHS = 20  # configs/digits_vae_trip.py (the quickstart)
METRICS_FILENAME = "metrics.jsonl"
IWAE_METRIC = "test_iwae_100"
ELBO_METRIC = "test_elbo"
FD_METRIC = "classifier_fd"
FD_NUM_SAMPLES = 5000

# name -> (prior.kind, prior.learnable, table label)
PRIOR_VARIANTS = {
    "normal": ("normal", True, "N(0, I)"),
    "gmm_F": ("gmm", False, "GMM F"),
    "gmm_L": ("gmm", True, "GMM L"),
    "trip_F": ("trip", False, "TRIP F"),
    "trip_L": ("trip", True, "TRIP L"),
}


def run_workdir(root: str, prior: str, seed: int, epochs: int) -> str:
  """The workdir of one run: <root>/epochs_<E>/<prior>_seed<S>."""
  return os.path.join(root, f"epochs_{epochs}", f"{prior}_seed{seed}")


def train_command(prior: str, seed: int, epochs: int, workdir: str) -> list[str]:
  """The `python -m train.vae` command of one run (the same command resumes it)."""
  kind, learnable, _ = PRIOR_VARIANTS[prior]
  return [sys.executable, "-m", "train.vae", f"--config={CONFIG_PATH}",
          f"--workdir={workdir}", f"--config.prior.kind={kind}",
          f"--config.prior.learnable={learnable}", f"--config.train.seed={seed}",
          f"--config.train.num_epochs={epochs}", "--config.train.progress_bar=False"]


def final_eval(workdir: str, epochs: int) -> dict | None:
  """The run's evaluation record after its last epoch (with IWAE-100), or None."""
  path = os.path.join(workdir, METRICS_FILENAME)
  if not os.path.exists(path):
    return None
  with open(path) as file:
    records = [json.loads(line) for line in file if line.strip()]
  for record in reversed(records):
    if (record.get("split") == "eval" and record.get("epoch") == epochs
        and IWAE_METRIC in record):
      return record
  return None


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


def summarize(runs: list[dict]) -> list[dict]:
  """Per prior (in PRIOR_VARIANTS order): seeds, mean and sd of test ELBO and IWAE-100.

  Args:
    runs: records {"prior", "seed", "test_elbo", "test_iwae_100", ...}.
  """
  rows = []
  for prior in PRIOR_VARIANTS:
    chosen = [run for run in runs if run["prior"] == prior]
    if not chosen:
      continue
    row = {"prior": prior, "label": PRIOR_VARIANTS[prior][2],
           "seeds": sorted(run["seed"] for run in chosen)}
    for metric in (ELBO_METRIC, IWAE_METRIC, FD_METRIC):
      values = [run.get(metric) for run in chosen]
      if all(value is not None for value in values):
        row[f"{metric}_mean"], row[f"{metric}_sd"] = mean_and_sd(values)
    rows.append(row)
  return rows


def markdown_table(rows: list[dict], epochs: int) -> str:
  """The results as a markdown table (nats per digit, higher is better; FD lower)."""
  with_fd = any(f"{FD_METRIC}_mean" in row for row in rows)
  columns = [(ELBO_METRIC, "test ELBO"), (IWAE_METRIC, "test IWAE-100")]
  if with_fd:
    columns.append((FD_METRIC, f"classifier FD ({FD_NUM_SAMPLES:,} samples)"))
  lines = [f"Offline digits (4,000 train / 500 test binarized MNIST digits), "
           f"{CONFIG_PATH}, {epochs} epochs; mean ± sd over seeds; ELBO and IWAE in "
           f"nats per digit (higher is better)"
           + ("; classifier FD of prior samples (lower is better)." if with_fd else "."),
           "",
           "| prior | seeds | " + " | ".join(title for _, title in columns) + " |",
           "|---" * (len(columns) + 2) + "|"]
  for row in rows:
    cells = [f"{row[f'{metric}_mean']:.2f} ± {row[f'{metric}_sd']:.2f}"
             if f"{metric}_mean" in row else "n/a" for metric, _ in columns]
    lines.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def classifier_fd_of_run(workdir: str, step: int, classifier_params) -> float:
  """Classifier FD of the checkpoint at `step` (cached in the run's metrics.jsonl)."""
  # JAX only in the parent process when FD is wanted.
  from tripjax.metrics import sampling
  from tripjax.training import metric_writer
  from tripjax.training import samplers

  path = os.path.join(workdir, METRICS_FILENAME)
  with open(path) as file:
    for line in file:
      record = json.loads(line) if line.strip() else {}
      if (record.get("split") == FD_METRIC and record.get("step") == step
          and record.get("num_samples") == FD_NUM_SAMPLES and record.get("seed") == 0):
        return record[FD_METRIC]
  sample_fn, reference, position = samplers.load_checkpoint_sampler(workdir, step=step)
  value = sampling.classifier_fd_from_sampler(sample_fn, reference, classifier_params,
                                              num_samples=FD_NUM_SAMPLES, batch_size=500,
                                              seed=0, progress=False)
  metric_writer.MetricWriter(workdir).write(
      position["step"], position["epoch"], FD_METRIC,
      {FD_METRIC: value, "num_samples": FD_NUM_SAMPLES, "seed": 0})
  return value


def run_all(jobs: list[tuple[str, int]], *, root: str, epochs: int, parallel: int,
            quiet_file: str = QUIET_FILE, poll_seconds: float = 2.0) -> None:
  """Trains every unfinished (prior, seed) run, `parallel` at a time."""
  pending = [(prior, seed) for prior, seed in jobs
             if final_eval(run_workdir(root, prior, seed, epochs), epochs) is None]
  running: list[tuple[str, int, subprocess.Popen, float]] = []
  try:
    while pending or running:
      while pending and len(running) < parallel:
        wait_while_quiet(quiet_file)
        prior, seed = pending.pop(0)
        workdir = run_workdir(root, prior, seed, epochs)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "train.log"), "a") as log:
          print(f"start {prior} seed {seed} -> {workdir}", flush=True)
          process = subprocess.Popen(train_command(prior, seed, epochs, workdir),
                                     stdout=log, stderr=subprocess.STDOUT)
        running.append((prior, seed, process, time.perf_counter()))
      time.sleep(poll_seconds)
      for entry in list(running):
        prior, seed, process, start = entry
        if process.poll() is None:
          continue
        running.remove(entry)
        workdir = run_workdir(root, prior, seed, epochs)
        record = final_eval(workdir, epochs)
        if process.returncode != 0 or record is None:
          raise RuntimeError(
              f"run {prior} seed {seed} failed (exit {process.returncode}); see "
              f"{os.path.join(workdir, 'train.log')}. Running this command again "
              f"resumes every unfinished run from its last checkpoint.")
        print(f"done  {prior} seed {seed} in {time.perf_counter() - start:.0f} s: "
              f"test ELBO {record[ELBO_METRIC]:.2f}, IWAE-100 {record[IWAE_METRIC]:.2f}",
              flush=True)
  finally:  # On an error or Ctrl-C, stop the other runs too; they resume next time.
    for _, _, process, _ in running:
      if process.poll() is None:
        process.terminate()
        process.wait()


def collect(jobs: list[tuple[str, int]], *, root: str, epochs: int,
            classifier_params=None) -> list[dict]:
  """The final evaluation of every run in `jobs` (all must be finished), with its
  classifier FD if `classifier_params` is given."""
  runs = []
  for prior, seed in jobs:
    workdir = run_workdir(root, prior, seed, epochs)
    record = final_eval(workdir, epochs)
    run = {"prior": prior, "seed": seed, "workdir": workdir, "step": record["step"],
           ELBO_METRIC: record[ELBO_METRIC], IWAE_METRIC: record[IWAE_METRIC],
           "test_kl": record.get("test_kl"),
           "test_log_likelihood": record.get("test_log_likelihood")}
    if classifier_params is not None:
      run[FD_METRIC] = classifier_fd_of_run(workdir, record["step"], classifier_params)
    runs.append(run)
  return runs


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--priors", nargs="+", default=list(PRIOR_VARIANTS),
                      choices=list(PRIOR_VARIANTS))
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                      help="training epochs per run (the quickstart's by default)")
  parser.add_argument("--workdir", default="runs/results",
                      help="root of the run workdirs and of results.md/json")
  parser.add_argument("--parallel", type=int, default=1,
                      help="runs at a time (1 on a 2-core machine)")
  parser.add_argument("--classifier-fd", action=argparse.BooleanOptionalAction,
                      default=True, help="add the classifier FD of prior samples")
  parser.add_argument("--classifier-workdir", default="runs/classifier",
                      help="cached FD classifier (python -m train.train_classifier)")
  args = parser.parse_args(argv)
  if args.parallel < 1 or args.epochs < 1:
    parser.error("--parallel and --epochs must be positive")
  # Seed-major: every prior's seed 0 first, so a partial sweep already compares priors.
  jobs = [(prior, seed) for seed in args.seeds for prior in args.priors]
  run_all(jobs, root=args.workdir, epochs=args.epochs, parallel=args.parallel)
  classifier_params = None
  if args.classifier_fd:
    from tripjax.configs import digits_classifier
    from tripjax.training import classifier
    classifier_params, _ = classifier.get_or_train(digits_classifier.get_config(),
                                                   args.classifier_workdir)
  runs = collect(jobs, root=args.workdir, epochs=args.epochs,
                 classifier_params=classifier_params)
  rows = summarize(runs)
  table = markdown_table(rows, args.epochs)
  print(table)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "results.md"), "w") as file:
    file.write(table)
  with open(os.path.join(args.workdir, "results.json"), "w") as file:
    json.dump({"config": CONFIG_PATH, "epochs": args.epochs, "seeds": args.seeds,
               "classifier_fd_num_samples": FD_NUM_SAMPLES if args.classifier_fd else None,
               "rows": rows, "runs": runs}, file, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
