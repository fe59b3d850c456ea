"""Mode coverage of WGAN-GP on the 2-D mixtures by prior (issue 20, section 1).

  nice -n 10 python -m benchmarks.gan_modes                  # the whole study (hours)
  python -m benchmarks.gan_modes --datasets ring8 --priors normal trip_L --seeds 0
  python -m benchmarks.gan_modes --smoke                     # seconds: the plumbing
  python -m benchmarks.gan_modes --set "model.widths=(128,128,128)" --time 20

Every run is one `python -m train.gan --config configs/<dataset>_wgangp.py` (MLPs,
PacGAN's 4x400 generator and 3x200 critic, batch 256, n_critic 5; see the configs) for
`--steps` generator steps, with the prior (`PRIORS`), the latent size
(`model.latent_dim`, `--latent-dims`) and `train.seed` overridden; its workdir is
`<workdir>/<dataset>/steps_<S>/<prior>_latent<d>_seed<k>`. A run whose final mode
metrics are in its metrics.jsonl is skipped; an interrupted one resumes from its last
checkpoint (the trainer's resume), so running the same command again finishes the study.
The runs share one persistent XLA compilation cache (`<workdir>/jax_cache`).
`--set FIELD=VALUE` (repeatable) sets a config field for every run, recorded in each
run's fields and in the table's caption: tune the shared settings with it, each setting
in its own `--workdir` (a workdir's runs refuse another config).

Priors (`PRIORS`): N(0, I); the factorized GMM ("gmm", N = 10 Gaussians per latent
variable) and TRIP (N = 10, ring rank m = 40), F = `prior.learnable=False` (the prior
keeps its random initialization) and L = learned by eq. 10's score function; the
paper's full-space GMM ("full_gmm": one diagonal mixture of d * N = 10 d components),
F and L. TRIP keeps the paper's N = 10 on the 5x5 grid too.

Metrics (`tripjax.metrics.modes`, PacGAN's Table 1), of the `gan.MODE_NUM_SAMPLES` =
2,500 samples the trainer scores after its last step: modes covered (a mode counts when
at least one high-quality sample has it as its nearest centre), the share of
high-quality samples (within 3 sd of their nearest centre) and the reverse KL
KL(q || uniform) of the high-quality samples' modes (empty modes add 0; +inf when no
sample is high quality). The table gives mean ± sample sd over seeds.

Output: the results file pair `<results-dir>/gan_modes.{json,md}` (`results_files`;
one table per dataset in the .md), and the figure `<figure>` (default
docs/gan_modes.png): one row per dataset, one panel per prior, the final generator's
samples of seed `--figure-seed` at latent size `--figure-latent` over the true modes.

`--time K` trains nothing: it prints the median time of one generator step (n_critic
critic updates and the generator + prior update, compiled as the loop runs it, after
compilation and a warm-up) over K steps for each prior and latent size of the
study's networks on this machine, and what the study's runs would cost at that speed.

`--smoke` trains 4-step runs of tiny networks (2 priors, ring8, latent 2, seed 0) under
`<workdir>` and writes its results and figure there: it checks the plumbing, not GANs.

Before starting each run the script waits while /tmp/tripjax_quiet exists.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any

from benchmarks import results_files
from benchmarks import vae_results

STUDY = "gan_modes"  # results/gan_modes.json and .md
DATASETS = ("ring8", "grid25")
NUM_MODES = {"ring8": 8, "grid25": 25}
DATASET_LABELS = {"ring8": "ring of 8 Gaussians (radius 2, sd 0.02)",
                  "grid25": "5x5 grid of 25 Gaussians (spacing 2, sd 0.05)"}
LATENT_DIMS = (2, 16)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_STEPS = 10_000  # the configs' train.num_steps; not yet tuned (issue 20)
METRICS = (("modes_covered", "modes covered"),
           ("high_quality_share", "high-quality samples"),
           ("reverse_kl", "reverse KL (nats)"))
CACHE_DIRNAME = "jax_cache"
DEFAULT_FIGURE = "docs/gan_modes.png"

# Tiny networks and data for --smoke (the plumbing in seconds).
SMOKE_OVERRIDES = (("model.widths", (16, 16)), ("model.critic_widths", (16, 16)),
                   ("data.num_train_examples", 2000), ("train.batch_size", 32),
                   ("gan.n_critic", 2), ("prior.num_components", 3), ("prior.rank", 2),
                   ("train.checkpoint_every_steps", 2), ("train.log_every_steps", 2))
SMOKE_STEPS = 4
SMOKE_PRIORS = ("normal", "trip_L")


@dataclasses.dataclass(frozen=True)
class Prior:
  """A row of the table: its label and its `--config.` overrides."""
  label: str
  overrides: tuple[tuple[str, Any], ...]


PRIORS = {
    "normal": Prior("N(0, I)", (("prior.kind", "normal"),)),
    "gmm_F": Prior("GMM F", (("prior.kind", "gmm"), ("prior.learnable", False))),
    "gmm_L": Prior("GMM L", (("prior.kind", "gmm"), ("prior.learnable", True))),
    "full_gmm_F": Prior("full GMM F", (("prior.kind", "full_gmm"),
                                       ("prior.learnable", False))),
    "full_gmm_L": Prior("full GMM L", (("prior.kind", "full_gmm"),
                                       ("prior.learnable", True))),
    "trip_F": Prior("TRIP F", (("prior.kind", "trip"), ("prior.learnable", False))),
    "trip_L": Prior("TRIP L", (("prior.kind", "trip"), ("prior.learnable", True))),
}


def config_path(dataset: str) -> str:
  return f"configs/{dataset}_wgangp.py"


def run_workdir(root: str, dataset: str, prior: str, latent_dim: int, seed: int,
                steps: int) -> str:
  """<root>/<dataset>/steps_<S>/<prior>_latent<d>_seed<k>."""
  return os.path.join(root, dataset, f"steps_{steps}",
                      f"{prior}_latent{latent_dim}_seed{seed}")


def train_command(dataset: str, prior: str, latent_dim: int, seed: int, steps: int,
                  workdir: str, extra: tuple[tuple[str, Any], ...] = ()) -> list[str]:
  """The `python -m train.gan` command of one run (the same command resumes it)."""
  overrides = [f"--config.{field}={vae_results._flag_value(value)}"
               for field, value in PRIORS[prior].overrides + tuple(extra)]
  return [sys.executable, "-m", "train.gan", f"--config={config_path(dataset)}",
          f"--workdir={workdir}", *overrides, f"--config.model.latent_dim={latent_dim}",
          f"--config.train.seed={seed}", f"--config.train.num_steps={steps}",
          f"--config.eval.every_steps={steps}", "--config.eval.every_epochs=0",
          "--config.train.progress_bar=False"]


def final_record(workdir: str, steps: int) -> dict | None:
  """The run's mode metrics after its last step, or None while it is unfinished."""
  for record in reversed(vae_results._read_records(workdir)):
    if (record.get("split") == "eval" and record.get("step") == steps
        and "modes_covered" in record):
      return record
  return None


def _number(value: Any) -> float:
  """A metric as metrics.jsonl stores it (inf and NaN as strings) -> float."""
  return float(value)


def parse_settings(settings: list[str]) -> tuple[tuple[str, str], ...]:
  """["field=value", ...] (`--set`) -> ((field, value text), ...), each checked against
  both datasets' configs by the CLIs' own `cli.apply_override` (the field exists, the
  value has its type).

  Raises:
    ValueError: a setting without "=".
    ConfigError: an unknown field or a value of the wrong type (its message names both).
  """
  from tripjax.training import cli
  from tripjax.training import config_files

  pairs = []
  for setting in settings:
    field, separator, text = setting.partition("=")
    if not separator or not field:
      raise ValueError(f"--set takes FIELD=VALUE, got {setting!r}")
    for dataset in DATASETS:
      cli.apply_override(config_files.load_config(config_path(dataset)), field, text)
    pairs.append((field, text))
  return tuple(pairs)


def collect(jobs: list[tuple], *, root: str, steps: int,
            extra: tuple[tuple[str, Any], ...] = ()) -> list[dict]:
  """The final mode metrics of every finished run in `jobs` (unfinished ones left out);
  `extra`: the `--set` fields the runs were trained with."""
  runs = []
  for dataset, prior, latent_dim, seed in jobs:
    workdir = run_workdir(root, dataset, prior, latent_dim, seed, steps)
    record = final_record(workdir, steps)
    if record is None:
      continue
    fields = {field: list(value) if isinstance(value, tuple) else value
              for field, value in PRIORS[prior].overrides + tuple(extra)}
    fields["model.latent_dim"] = latent_dim
    run = {"dataset": dataset, "prior": prior, "latent_dim": latent_dim,
           "fields": fields, "seed": seed, "workdir": workdir, "steps": steps,
           "commits": results_files.run_commits(workdir)}
    for metric, _ in METRICS:
      value = _number(record[metric])
      run[metric] = value if math.isfinite(value) else str(value)
    runs.append(run)
  return runs


def _cell(values: list[float], metric: str) -> str:
  if any(not math.isfinite(value) for value in values):
    return "inf (no high-quality sample in a run)"
  mean, sd = vae_results.mean_and_sd(values)
  if metric == "high_quality_share":
    mean, sd = 100 * mean, 100 * sd
    return f"{mean:.1f}%" if len(values) == 1 else f"{mean:.1f} ± {sd:.1f}%"
  digits = 1 if metric == "modes_covered" else 3
  return (f"{mean:.{digits}f}" if len(values) == 1
          else f"{mean:.{digits}f} ± {sd:.{digits}f}")


def markdown_table(runs: list[dict], dataset: str, steps: int,
                   settings: list | tuple = ()) -> str:
  """One dataset's table: a row per (prior, latent size) with runs; `settings`: the
  (field, value) pairs every run set on top of the config (`--set`)."""
  config = config_path(dataset) + "".join(f", {field}={vae_results._flag_value(value)}"
                                          for field, value in settings)
  lines = [f"Mode coverage on the {DATASET_LABELS[dataset]}, WGAN-GP "
           f"({config}), {steps:,} generator steps; "
           f"2,500 samples per run, mean ± sd over seeds; modes covered of "
           f"{NUM_MODES[dataset]} (higher is better), high-quality samples within 3 sd "
           f"of their mode (higher is better), reverse KL to uniform over modes (lower "
           f"is better).", "",
           "| prior | latent | seeds | " + " | ".join(title for _, title in METRICS)
           + " |", "|---" * (len(METRICS) + 3) + "|"]
  for prior in PRIORS:
    for latent_dim in sorted({run["latent_dim"] for run in runs}):
      chosen = [run for run in runs if run["dataset"] == dataset
                and run["prior"] == prior and run["latent_dim"] == latent_dim]
      if not chosen:
        continue
      cells = [_cell([_number(run[metric]) for run in chosen], metric)
               for metric, _ in METRICS]
      lines.append(f"| {PRIORS[prior].label} | {latent_dim} | {len(chosen)} | "
                   + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def render(results: dict) -> str:
  """The .md of a results file (`results_files.write`) from its runs."""
  datasets = [dataset for dataset in DATASETS
              if any(run["dataset"] == dataset for run in results["runs"])]
  return "\n".join(markdown_table(results["runs"], dataset, results["steps"],
                                  [tuple(pair) for pair in results.get("settings", ())])
                   for dataset in datasets)


def write_results_files(runs: list[dict], steps: int, command: str,
                        results_dir: str, settings: tuple = ()) -> str:
  """Writes <results_dir>/gan_modes.json and .md; returns the markdown."""
  chosen = [{key: value for key, value in run.items() if key != "workdir"}
            for run in runs]
  settings = [list(pair) for pair in settings]
  markdown = render({"steps": steps, "runs": chosen, "settings": settings})
  results_files.write(STUDY, script="benchmarks.gan_modes", command=command,
                      markdown=markdown, results_dir=results_dir, steps=steps,
                      num_samples=2500, settings=settings, runs=chosen)
  return markdown


def plot_panels(runs: list[dict], path: str, *, seed: int, latent_dim: int) -> bool:
  """One row per dataset, one panel per prior: 2,500 samples of the final generator
  of `seed` at `latent_dim` (the ones its metrics count) over the true modes (circles
  of 3 sd). False if no run."""
  chosen = [run for run in runs if run["seed"] == seed and run["latent_dim"] == latent_dim]
  datasets = [d for d in DATASETS if any(run["dataset"] == d for run in chosen)]
  priors = [p for p in PRIORS if any(run["prior"] == p for run in chosen)]
  if not chosen:
    return False
  import jax
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot

  from tripjax import data as data_lib
  from tripjax.training import gan
  from tripjax.training import rng as rng_lib
  from tripjax.training import trainers

  figure, axes = pyplot.subplots(len(datasets), len(priors), squeeze=False,
                                 figsize=(2.3 * len(priors), 2.4 * len(datasets)), dpi=110)
  for row, dataset in enumerate(datasets):
    mixture = data_lib.point_mixture(dataset)
    half = float(abs(mixture.centres).max()) + 1.0
    for column, prior in enumerate(priors):
      ax = axes[row][column]
      ax.set_xlim(-half, half)
      ax.set_ylim(-half, half)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      run = next((run for run in chosen if run["dataset"] == dataset
                  and run["prior"] == prior), None)
      for x, y in mixture.centres:
        ax.add_patch(pyplot.Circle((x, y), 3 * mixture.sd, fill=False, color="red",
                                   linewidth=0.6))
      if run is None:
        ax.set_title(f"{PRIORS[prior].label}: not run", fontsize=8)
        continue
      # The samples the trainer scored: its "image_grid" key, so the panel shows the
      # points its title's numbers count.
      sampler = trainers.load_checkpoint_sampler(run["workdir"], step=run["steps"])
      points = jax.device_get(sampler.sample_fn(
          rng_lib.RandomStreams(seed).key("image_grid"), gan.MODE_NUM_SAMPLES))
      ax.scatter(points[:, 0], points[:, 1], s=0.5, color="tab:blue", alpha=0.5)
      ax.set_title(f"{PRIORS[prior].label}: {run['modes_covered']:.0f}/"
                   f"{NUM_MODES[dataset]}, {100 * float(run['high_quality_share']):.0f}%",
                   fontsize=8)
  figure.suptitle(f"WGAN-GP samples (seed {seed}, latent {latent_dim}); red: 3 sd "
                  f"around each mode", fontsize=9)
  figure.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  figure.savefig(path)
  pyplot.close(figure)
  return True


def time_steps(dataset: str, priors, latent_dims, repeats: int,
               extra: tuple[tuple[str, Any], ...] = ()) -> list[dict]:
  """Median wall and CPU seconds per generator step of the study's config, per (prior, latent)."""
  import statistics
  import time

  import jax
  import numpy as np

  from tripjax import data as data_lib
  from tripjax.configs import grid25_wgangp
  from tripjax.configs import ring8_wgangp
  from tripjax.training import cli
  from tripjax.training import gan

  module = {"ring8": ring8_wgangp, "grid25": grid25_wgangp}[dataset]
  rows = []
  for prior in priors:
    for latent_dim in latent_dims:
      config = module.get_config()
      config.update_from_flattened_dict(dict(PRIORS[prior].overrides))
      for field, text in extra:
        cli.apply_override(config, field, text)
      config.model.latent_dim = latent_dim
      model = gan.build_model(config, data_lib.POINT_SHAPE)
      optimizers = gan.make_optimizers(config)
      state = gan.init_state(model, optimizers, jax.random.key(0))
      step = jax.jit(gan.make_train_step(model, optimizers, **gan.step_settings(config)),
                     donate_argnums=0)
      size = config.gan.n_critic * config.train.batch_size
      points, _ = data_lib.sample_points(data_lib.point_mixture(dataset), size,
                                         np.random.default_rng(0))
      batch = {"image": points.reshape(config.gan.n_critic, config.train.batch_size, 2)}
      times, cpu_times = [], []
      for index in range(repeats + 2):  # two warm-up calls (the first compiles)
        start, cpu_start = time.perf_counter(), time.process_time()
        state, metrics = step(state, batch, jax.random.key(index))
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
      seconds = statistics.median(times[2:])
      cpu_seconds = statistics.median(cpu_times[2:])
      rows.append({"prior": prior, "latent_dim": latent_dim, "seconds": seconds,
                   "cpu_seconds": cpu_seconds})
      print(f"{PRIORS[prior].label}, latent {latent_dim}: {1e3 * seconds:.1f} ms per "
            f"step ({1 / seconds:.1f} steps/s), {1e3 * cpu_seconds:.1f} ms of CPU time "
            f"(all threads; a loaded machine inflates the first, less the second)",
            flush=True)
  return rows


def make_jobs(datasets, priors, latent_dims, seeds) -> list[tuple]:
  """(dataset, prior, latent_dim, seed), seed-major: every row's seed 0 first."""
  return [(dataset, prior, latent_dim, seed) for seed in seeds for dataset in datasets
          for latent_dim in latent_dims for prior in priors]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
  parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
  parser.add_argument("--latent-dims", type=int, nargs="+", default=list(LATENT_DIMS))
  parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
  parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                      help="generator steps per run")
  results_files.add_sweep_arguments(parser, workdir="runs/gan_modes")
  parser.add_argument("--figure", default=DEFAULT_FIGURE)
  parser.add_argument("--figure-seed", type=int, default=0)
  parser.add_argument("--figure-latent", type=int, default=2)
  parser.add_argument("--time", type=int, default=0, metavar="K",
                      help="time K steps per prior and latent size (no training)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="a config field for every run (repeatable), e.g. "
                           "train.learning_rate=3e-4 or model.widths=(128,128,128); "
                           "give such a sweep its own --workdir")
  parser.add_argument("--smoke", action="store_true",
                      help="4-step runs of tiny networks under --workdir (plumbing only)")
  args = parser.parse_args(argv)
  if args.parallel < 1 or args.steps < 1 or min(args.latent_dims) < 1:
    parser.error("--parallel, --steps and --latent-dims must be positive")
  try:
    extra = parse_settings(args.set)
  except ValueError as error:
    parser.error(str(error))
  if args.time:
    total = 0.0
    for dataset in args.datasets:
      rows = time_steps(dataset, args.priors, args.latent_dims, args.time, extra)
      total += sum(row["seconds"] for row in rows) * args.steps * len(args.seeds)
    print(f"The study ({len(args.datasets)} datasets x {len(args.priors)} priors x "
          f"{len(args.latent_dims)} latent sizes x {len(args.seeds)} seeds x "
          f"{args.steps:,} steps) at these speeds: {total / 3600:.1f} hours of steps "
          f"(one run at a time; compilation and evaluation not counted).")
    return 0
  if args.smoke:
    args.datasets, args.priors, args.latent_dims, args.seeds = (
        ["ring8"], list(SMOKE_PRIORS), [2], [0])
    args.steps, extra = SMOKE_STEPS, SMOKE_OVERRIDES + extra
    args.results_dir = os.path.join(args.workdir, "results")
    args.figure = os.path.join(args.workdir, "gan_modes.png")
    args.figure_seed, args.figure_latent = 0, 2
  jobs = make_jobs(args.datasets, args.priors, args.latent_dims, args.seeds)
  if args.train:
    vae_results.run_jobs(
        jobs, workdir_of=lambda job: run_workdir(args.workdir, *job, args.steps),
        command_of=lambda job, workdir: train_command(*job, args.steps, workdir, extra),
        finished=lambda workdir: final_record(workdir, args.steps),
        summary=lambda record: (f"{record['modes_covered']} modes, "
                                f"{100 * _number(record['high_quality_share']):.1f}% "
                                f"high quality, reverse KL {record['reverse_kl']}"),
        cache_dir=os.path.join(args.workdir, CACHE_DIRNAME), parallel=args.parallel)
  runs = collect(jobs, root=args.workdir, steps=args.steps, extra=extra)
  command = results_files.command_line("benchmarks.gan_modes", argv)
  print(write_results_files(runs, args.steps, command, args.results_dir,
                            () if args.smoke else extra))
  if plot_panels(runs, args.figure, seed=args.figure_seed, latent_dim=args.figure_latent):
    print(f"figure: {args.figure}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
