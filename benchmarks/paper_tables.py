r"""The paper's Tables 1 and 2 with the TRIP authors' protocol, one command per table.

  python -m benchmarks.paper_tables --table 1 --data_dir ~/tensorflow_datasets \
      --workdir runs/paper --inception_weights inception_fid.npz [--flows]
  python -m benchmarks.paper_tables --table 2 --data_dir ~/tensorflow_datasets \
      --workdir runs/paper --inception_weights inception_fid.npz
  python -m benchmarks.paper_tables --table 1 --smoke   # the plumbing, mock data

Table 1 (CelebA 64x64): rows VAE, WGAN, WGAN-GP (FID) and the VAE's test ELBO and
IWAE-100; columns N(0, I), GMM F/L and TRIP F/L (F: prior.learnable=False, L: learned).
The GMM is the paper's full-space mixture (prior.kind=full_gmm, latent_dim * N diagonal
components). `--flows` adds a "VAE + flows" block: the same VAE cells with a 4-layer
RealNVP on every prior (prior.flows=4; the authors' `--add_flows`, not in the paper's
table). Table 2 (CIFAR-10): WGAN-GP-TRIP (L), beside the paper's numbers for it and
for the models it was compared with.

Each cell is one training run of a preset of configs/paper/ (`BLOCKS`) with its prior
set by `prior.kind` / `prior.learnable` / `prior.flows`, in
`<workdir>/table<T>/<block>_<column>`. A finished run (its last checkpoint and, for the
VAE, its final evaluation with IWAE) is not trained again; an interrupted one resumes
from its newest checkpoint (the trainer's resume), so rerunning the command finishes
the table. Then FID of `--fid_samples` samples of the last checkpoint against the test
split (`tripjax.metrics.sampling.fid_from_sampler`, the Inception weights of
`--inception_weights`; `python -m tripjax.metrics.convert_inception` makes them) is
appended to the run's metrics.jsonl (split "fid") unless it is there already. Steps per
cell: VAE 80,000 (8 rounds x 10,000, batch 128); WGAN and WGAN-GP 20,000 generator
steps of 4 critic updates each (batch 256): configs/paper/.

The table prints our number and the paper's in each cell ("ours / paper") and is
written to `<results-dir>/paper_table<T>.{json,md}` (`results_files`).

`--the_same_num_params` (Table 1; the authors' `train_vaes.py --the_same_num_params`)
trains the VAE cells again, in `<workdir>/table1_same_num_params`, with each learned
prior's encoder and decoder narrowed so that the trainable parameters (networks plus
prior) are as many as N(0, I)'s networks at the preset's widths
(`same_num_params_widths`). The authors hard-code base widths for their nets (TRIP 60,
GMM 63, Normal 64; with `--add_flows` 61 / 62 / 63, a branch of their script that never
sets the width and so cannot run); here the width is found by counting this project's
networks (`tripjax.training.vae.num_trainable_params`), where one unit of base width is
about 320,000 parameters: TRIP L (402,000 prior parameters at d = 100, N = 10, m = 20)
and the full GMM L (201,000) get 63; with flows (137,000 more) 62 and 63. Fixed priors
(F) train no prior parameters (nor flows) and keep the preset's widths, as theirs do. Results:
`paper_table1_same_num_params.{json,md}`.

`--smoke` runs every cell for `SMOKE_STEPS` steps on TFDS mock data
(`tfds.testing.mock_data`) with shrunken networks (`SMOKE_OVERRIDES`), FID of
`SMOKE_FID_SAMPLES` samples from random Inception weights (its first
`SMOKE_FEATURE_DIMS` features), and writes its table under `<workdir>`: it checks the
plumbing (training, resuming, FID, ELBO / IWAE, the table), and its numbers mean
nothing (the table says so). Every cell compiles its own programs (the trainers build
them per run, and the programs of two prior kinds differ); the runs share one
persistent XLA compilation cache (`<workdir>/jax_cache`), so identical programs
(Inception) compile once and a second smoke run reuses the first one's. A smoke cell's
time is almost all compiling, which XLA does on one thread, so the smoke trains two
cells at a time in worker processes (`--jobs`, default 2 with `--smoke`), compiled
without LLVM's optimizations (`SMOKE_XLA_FLAGS`). `--cells` runs some of the cells.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import Any, Iterator

import ml_collections
import numpy as np

from benchmarks import results_files

PRESETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "paper")
CACHE_DIRNAME = "jax_cache"
FLOW_LAYERS = 4
SMOKE_STEPS = 2
SMOKE_FID_SAMPLES = 4
SMOKE_FEATURE_DIMS = 16  # of Inception's 2,048 pool3 features (FidScorer)
SMOKE_MOCK_EXAMPLES = 12  # per TFDS split under mock data


@dataclasses.dataclass(frozen=True)
class Column:
  """A prior column: its label, prior.kind and prior.learnable."""
  label: str
  kind: str
  learnable: bool

  @property
  def slug(self) -> str:
    return {"N(0, I)": "normal"}.get(self.label, self.label.lower().replace(" ", "_"))


COLUMNS = (Column("N(0, I)", "normal", False), Column("GMM F", "full_gmm", False),
           Column("GMM L", "full_gmm", True), Column("TRIP F", "trip", False),
           Column("TRIP L", "trip", True))


@dataclasses.dataclass(frozen=True)
class Block:
  """A row block: its name, label, preset file and task."""
  name: str
  label: str
  preset: str
  task: str
  flows: int = 0

  @property
  def path(self) -> str:
    return os.path.join(PRESETS_DIR, self.preset)


BLOCKS = {
    "vae": Block("vae", "VAE", "celeba_vae.py", "vae"),
    "vae_flows": Block("vae_flows", "VAE + flows", "celeba_vae.py", "vae",
                       flows=FLOW_LAYERS),
    "wgan": Block("wgan", "WGAN", "celeba_wgan.py", "gan"),
    "wgangp": Block("wgangp", "WGAN-GP", "celeba_wgangp.py", "gan"),
    "cifar10_wgangp": Block("cifar10_wgangp", "WGAN-GP", "cifar10_wgangp.py", "gan"),
}

# The paper's numbers (Table 1: FID per block, then the VAE's ELBO and IWAE-100;
# Table 2: CIFAR-10 FID), by (row, column label).
PAPER_TABLE1 = {
    "VAE": (86.72, 85.64, 84.48, 85.31, 83.54),
    "WGAN": (63.46, 67.10, 61.82, 62.48, 57.6),
    "WGAN-GP": (54.71, 57.82, 62.10, 63.06, 52.86),
    "ELBO": (-194.16, -201.60, -193.88, -202.04, -193.32),
    "IWAE (k = 100)": (-185.09, -191.99, -184.73, -190.09, -184.43),
}
PAPER_TABLE2 = (("SN-GANs", 21.7), ("WGAN-GP + Two Time-Scale", 24.8),
                ("WGAN-GP", 29.3), ("WGAN-GP-TRIP", 16.72))


@dataclasses.dataclass(frozen=True)
class Cell:
  """One training run of a table."""
  block: Block
  column: Column

  @property
  def name(self) -> str:
    return f"{self.block.name}_{self.column.slug}"


def cells(table: int, flows: bool) -> list[Cell]:
  """The table's cells, in the order they are trained."""
  if table == 2:
    return [Cell(BLOCKS["cifar10_wgangp"], COLUMNS[-1])]
  names = ("vae",) + (("vae_flows",) if flows else ()) + ("wgan", "wgangp")
  return [Cell(BLOCKS[name], column) for name in names for column in COLUMNS]


def _set(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
  *path, name = field.split(".")
  node = config
  for part in path:
    node = node[part]
  node[name] = value


# Shrunken networks and schedules of --smoke, per task (and image side for the GAN).
SMOKE_OVERRIDES = {
    "common": (("model.latent_dim", 4), ("prior.num_components", 3), ("prior.rank", 2),
               ("train.batch_size", 8), ("train.num_steps", SMOKE_STEPS),
               ("train.checkpoint_every_steps", SMOKE_STEPS),
               ("train.log_every_steps", 1), ("train.progress_bar", False),
               ("train.cpu_devices", 1), ("train.reset_optimizer_every_steps", 1),
               ("eval.batch_size", 8), ("eval.every_steps", 0)),
    "vae": (("model.widths", (4, 4, 4, 4)), ("prior.refit_at_steps", (1,)),
            ("prior.refit_num_examples", 8), ("data.num_eval_examples", 8),
            ("eval.iwae_samples", 4), ("eval.iwae_samples_per_chunk", 2),
            ("eval.num_reconstructions", 8), ("eval.num_prior_samples", 8)),
    "gan": (("gan.n_critic", 1), ("eval.num_samples", 8)),  # 4:1: test_gan_options
    "gan64": (("model.widths", (8, 8, 8, 8)),),
    "gan32": (("model.widths", (8, 8, 8)),),
}


# The images of Table 1's VAE (CelebA 64x64) and their likelihood in the presets.
TABLE1_IMAGE_SHAPE = (64, 64, 3)


def same_num_params_widths(config: ml_collections.ConfigDict,
                           image_shape: tuple[int, ...] = TABLE1_IMAGE_SHAPE
                           ) -> tuple[int, ...]:
  """The VAE widths for `config`'s prior under `--the_same_num_params`: the preset's
  `model.widths` scaled by w / widths[0] for the base width w <= widths[0] whose
  trainable parameter count (`vae.num_trainable_params`) is nearest to that of N(0, I)
  (no prior parameters, no flows) at the preset's widths; the nearer of the two widths
  around it, the wider on a tie."""
  from tripjax.training import vae
  likelihood = config.model.likelihood
  base_widths = tuple(config.model.widths)

  def scaled(width: int) -> tuple[int, ...]:
    return tuple(max(1, round(w * width / base_widths[0])) for w in base_widths)

  def count(widths: tuple[int, ...], prior_config: ml_collections.ConfigDict) -> int:
    trial = prior_config.copy_and_resolve_references()
    trial.model.widths = widths
    return vae.num_trainable_params(trial, image_shape, likelihood)

  reference_config = config.copy_and_resolve_references()
  reference_config.prior.kind = "normal"
  reference_config.prior.flows = 0
  reference_config.prior.learnable = False
  target = count(base_widths, reference_config)
  width, above = base_widths[0], count(base_widths, config)
  while above > target and width > 1:  # the count grows with the width
    below = count(scaled(width - 1), config)
    if below <= target:
      return scaled(width) if above - target <= target - below else scaled(width - 1)
    width, above = width - 1, below
  return scaled(width)


def cell_config(cell: Cell, *, data_dir: str | None, smoke: bool,
                same_num_params: bool = False) -> ml_collections.ConfigDict:
  """The preset of the cell's block with its prior (and the smoke's shrinking; with
  `same_num_params`, the VAE's widths of `same_num_params_widths`)."""
  from tripjax.training import config_files
  config = config_files.load_config(cell.block.path)
  config.data.data_dir = data_dir
  config.prior.kind = cell.column.kind
  config.prior.learnable = cell.column.learnable
  if cell.block.flows:
    config.prior.flows = FLOW_LAYERS if not smoke else 2
  if smoke:
    overrides = SMOKE_OVERRIDES["common"] + SMOKE_OVERRIDES[cell.block.task]
    if cell.block.task == "gan":
      side = 32 if cell.block.name.startswith("cifar10") else 64
      overrides += SMOKE_OVERRIDES[f"gan{side}"]
    for field, value in overrides:
      _set(config, field, value)
  if same_num_params:
    if cell.block.task != "vae":
      raise ValueError(f"--the_same_num_params is for the VAE cells, not {cell.name}")
    config.model.widths = same_num_params_widths(config)
  return config


def _final_eval(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """The VAE's final evaluation record (with IWAE), or None."""
  from tripjax.training import metric_writer
  key = f"{config.eval.split}_iwae_{config.eval.iwae_samples}"
  for record in reversed(metric_writer.MetricWriter(workdir).read()):
    if (record.get("split") == "eval" and record.get("step") == config.train.num_steps
        and key in record):
      return record
  return None


def _finished(workdir: str, config: ml_collections.ConfigDict) -> bool:
  if not os.path.isdir(os.path.join(workdir, results_files.CHECKPOINTS_DIRNAME)):
    return False
  if results_files.newest_checkpoint_step(workdir) < config.train.num_steps:
    return False
  return config.task != "vae" or _final_eval(workdir, config) is not None


def _fid_record(workdir: str, step: int, num_samples: int) -> dict | None:
  from tripjax.training import metric_writer
  for record in reversed(metric_writer.MetricWriter(workdir).read()):
    if (record.get("split") == "fid" and record.get("step") == step
        and record.get("num_samples") == num_samples):
      return record
  return None


class FidScorer:
  """FID of a run's last checkpoint; the reference statistics of each test split are
  computed once.

  `feature_dims` (the smoke's): keep only the first this many of Inception's 2,048
  pool3 features, so the Frechet distance's matrix square roots are small (the full
  2,048-d one takes about 15 s on a CPU); None: all (FID).
  """

  def __init__(self, inception_variables: Any, num_samples: int, batch_size: int,
               feature_dims: int | None = None):
    self.variables = inception_variables
    self.num_samples = num_samples
    self.batch_size = batch_size
    self.feature_dims = feature_dims
    self.reference: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

  def features(self, images: Any) -> np.ndarray:
    from tripjax.metrics import inception
    features = inception.inception_features(self.variables, images,
                                            batch_size=self.batch_size)
    return np.asarray(features)[:, :self.feature_dims]

  def __call__(self, workdir: str, config: ml_collections.ConfigDict) -> float:
    from tripjax.metrics import frechet
    from tripjax.metrics import sampling
    from tripjax.training import metric_writer
    from tripjax.training import trainers
    step = config.train.num_steps
    record = _fid_record(workdir, step, self.num_samples)
    if record is not None:
      return float(record["fid"])
    sampler = trainers.load_checkpoint_sampler(workdir, step)
    reference_key = (config.data.name, config.data.split, config.data.split_seed,
                     config.data.get("num_eval_examples"))
    if reference_key not in self.reference:
      self.reference[reference_key] = frechet.gaussian_stats(
          self.features(sampler.reference_images))
    # As sampling.fid_from_sampler, with this scorer's features.
    stats = sampling.sampler_stats(sampler.sample_fn, self.features,
                                   num_samples=self.num_samples,
                                   batch_size=self.batch_size, progress=False)
    value = frechet.frechet_distance(*stats, *self.reference[reference_key])
    with metric_writer.MetricWriter(workdir) as writer:
      writer.write(sampler.position.step, sampler.position.epoch, "fid",
                   {"fid": value, "num_samples": self.num_samples, "seed": 0})
    return value


def run_cell(cell: Cell, root: str, *, data_dir: str | None, smoke: bool,
             fid: FidScorer, same_num_params: bool = False, log=print) -> dict:
  """Trains (or resumes, or skips) one cell, scores it; returns its record."""
  from tripjax.training import trainers
  config = cell_config(cell, data_dir=data_dir, smoke=smoke,
                       same_num_params=same_num_params)
  workdir = os.path.join(root, cell.name)
  start = time.perf_counter()
  if _finished(workdir, config):
    log(f"{cell.name}: finished run in {workdir}")
  else:
    log(f"{cell.name}: training {config.train.num_steps} steps in {workdir}")
    os.makedirs(workdir, exist_ok=True)
    results_files.record_start(workdir)
    trainers.train_and_evaluate(config, workdir)
  trained = time.perf_counter()
  record: dict[str, Any] = {"cell": cell.name, "block": cell.block.label,
                            "column": cell.column.label, "steps": config.train.num_steps,
                            "fields": {"prior.kind": config.prior.kind,
                                       "prior.learnable": config.prior.learnable,
                                       "prior.flows": config.prior.get("flows", 0),
                                       "model.widths": list(config.model.widths)},
                            "fid": fid(workdir, config),
                            "commits": results_files.run_commits(workdir)}
  if config.task == "vae":
    final = _final_eval(workdir, config)
    assert final is not None, f"{workdir}: no final evaluation"
    split = config.eval.split
    record["elbo"] = final[f"{split}_elbo"]
    record["iwae"] = final[f"{split}_iwae_{config.eval.iwae_samples}"]
    record["iwae_samples"] = config.eval.iwae_samples
  log(f"{cell.name}: " + ", ".join(f"{key} {record[key]:.4g}" for key in
                                   ("fid", "elbo", "iwae") if key in record)
      + f" (train {trained - start:.1f} s, score {time.perf_counter() - trained:.1f} s)")
  return record


def _pair(ours: float | None, paper: float | None) -> str:
  left = "not run" if ours is None or not math.isfinite(ours) else f"{ours:.2f}"
  right = "—" if paper is None else f"{paper:g}"
  return f"{left} / {right}"


def render(results: dict) -> str:
  """The markdown table of a results dict (`results_files` format)."""
  by_cell = {(run["block"], run["column"]): run for run in results["runs"]}
  caption = (f"**Table {results['table']}** ({results['dataset']}), ours / the "
             f"paper's. {results['protocol']}")
  if results.get("smoke"):
    caption = ("**SMOKE RUN: mock data, tiny networks, "
               f"{results['steps_note']}, FID from random Inception weights (the first "
               f"{SMOKE_FEATURE_DIMS} features, {SMOKE_FID_SAMPLES} samples): these "
               "numbers mean nothing.** " + caption)
  lines = [caption, ""]
  if results["table"] == 2:
    lines += ["| Model | FID (ours / paper) |", "|---|---|"]
    for model, paper in PAPER_TABLE2:
      run = by_cell.get(("WGAN-GP", "TRIP L")) if model == "WGAN-GP-TRIP" else None
      lines.append(f"| {model} | {_pair(run['fid'] if run else None, paper)} |")
    return "\n".join(lines) + "\n"
  labels = [column.label for column in COLUMNS]
  lines += ["| Metric | Model | " + " | ".join(labels) + " |",
            "|---|---|" + "---|" * len(labels)]
  blocks = [block for block in ("VAE", "VAE + flows", "WGAN", "WGAN-GP")
            if any(run["block"] == block for run in results["runs"])]
  for block in blocks:
    values = [by_cell.get((block, label), {}).get("fid") for label in labels]
    paper = PAPER_TABLE1.get(block, (None,) * len(labels))
    lines.append(f"| FID | {block} | " + " | ".join(
        _pair(v, p) for v, p in zip(values, paper)) + " |")
  for block in [b for b in blocks if b.startswith("VAE")]:
    for metric, row in (("elbo", "ELBO"), ("iwae", "IWAE (k = 100)")):
      values = [by_cell.get((block, label), {}).get(metric) for label in labels]
      paper = PAPER_TABLE1[row] if block == "VAE" else (None,) * len(labels)
      name = row if not results.get("smoke") else row.replace("100", "4")
      lines.append(f"| {name} | {block} | " + " | ".join(
          _pair(v, p) for v, p in zip(values, paper)) + " |")
  return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _smoke_data() -> Iterator[None]:
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=SMOKE_MOCK_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield


@dataclasses.dataclass(frozen=True)
class Scoring:
  """How a process scores its cells: the compilation cache under `workdir` and the FID
  (random Inception weights with `smoke`, else the converted ones)."""
  workdir: str
  smoke: bool
  inception_weights: str | None
  fid_samples: int

  @property
  def num_samples(self) -> int:
    """How many samples each FID scores."""
    return SMOKE_FID_SAMPLES if self.smoke else self.fid_samples

  def start(self) -> FidScorer:
    """Points JAX at the shared compilation cache; the process's `FidScorer`."""
    import jax
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(self.workdir, CACHE_DIRNAME))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    from tripjax.metrics import inception
    if self.smoke:
      return FidScorer(inception.random_inception_variables(0), self.num_samples,
                       SMOKE_FID_SAMPLES, feature_dims=SMOKE_FEATURE_DIMS)
    return FidScorer(inception.load_inception_variables(self.inception_weights),
                     self.num_samples, 100)


@dataclasses.dataclass(frozen=True)
class CellJob:
  """`run_cell`'s arguments for one cell (picklable, for a worker process)."""
  cell: Cell
  root: str
  data_dir: str | None
  smoke: bool
  same_num_params: bool

  def run(self, fid: FidScorer) -> dict:
    return run_cell(self.cell, self.root, data_dir=self.data_dir, smoke=self.smoke,
                    fid=fid, same_num_params=self.same_num_params)


# A worker process's FidScorer and the mock data it keeps open (`_start_worker`).
_WORKER: dict[str, Any] = {}


# XLA:CPU flags of the smoke's worker processes: a smoke cell runs 2 steps, so its time
# is compiling; without LLVM's optimizations XLA compiles about a third faster.
SMOKE_XLA_FLAGS = ("--xla_backend_optimization_level=0",
                   "--xla_llvm_disable_expensive_passes=true")


def _start_worker(scoring: Scoring) -> None:
  stack = contextlib.ExitStack()
  if scoring.smoke:  # before JAX starts its backend in this fresh process
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), *SMOKE_XLA_FLAGS]).strip()
    stack.enter_context(_smoke_data())
  _WORKER.update(fid=scoring.start(), stack=stack)


def _run_in_worker(job: CellJob) -> dict:
  return job.run(_WORKER["fid"])


def run_cells(jobs: list[CellJob], scoring: Scoring, num_processes: int) -> list[dict]:
  """Each job's `run_cell` record, in order. With `num_processes` > 1 the cells train
  at once in fresh ("spawn") worker processes that share the compilation cache: on a
  CPU, where the smoke's time is mostly XLA compiling each cell's own programs, this
  is what uses more than one core (XLA compiles a program on one thread)."""
  if num_processes == 1 or len(jobs) <= 1:
    fid = scoring.start()
    with _smoke_data() if scoring.smoke else contextlib.nullcontext():
      return [job.run(fid) for job in jobs]
  import multiprocessing
  context = multiprocessing.get_context("spawn")
  pool = context.Pool(min(num_processes, len(jobs)), initializer=_start_worker,
                      initargs=(scoring,))
  try:
    return pool.map(_run_in_worker, jobs, chunksize=1)
  finally:  # (not terminate(): the workers exit on their own, releasing their locks)
    pool.close()
    pool.join()


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_tables",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--table", type=int, choices=(1, 2), default=1)
  parser.add_argument("--data_dir", default=None, help="TFDS data_dir (celeb_a, cifar10)")
  parser.add_argument("--workdir", default="runs/paper")
  parser.add_argument("--inception_weights", default=None,
                      help="converted Inception weights (.npz); not with --smoke")
  parser.add_argument("--fid_samples", type=int, default=10_000)
  parser.add_argument("--flows", action="store_true",
                      help="Table 1: also the VAE cells with a 4-layer RealNVP")
  parser.add_argument("--results_dir", default=results_files.RESULTS_DIR)
  parser.add_argument("--smoke", action="store_true",
                      help="every cell for a few steps on mock data (the plumbing)")
  parser.add_argument("--cells", nargs="*", default=None,
                      help="only these cells (names as <block>_<column>, e.g. vae_trip_l)")
  parser.add_argument("--jobs", type=int, default=None,
                      help="cells trained at once, each in its own process (default: "
                           "1, or 2 with --smoke)")
  parser.add_argument("--the_same_num_params", action="store_true",
                      help="Table 1's VAE cells with the networks narrowed so that every "
                           "prior trains as many parameters as N(0, I)")
  args = parser.parse_args(argv)
  if not args.smoke and not args.inception_weights:
    parser.error("--inception_weights is required (python -m "
                 "tripjax.metrics.convert_inception makes the file); or --smoke")
  if args.jobs is not None and args.jobs < 1:
    parser.error(f"--jobs must be at least 1, got {args.jobs}")
  if args.the_same_num_params and args.table != 1:
    parser.error("--the_same_num_params is for Table 1 (its VAE cells)")
  study = f"table{args.table}" + ("_same_num_params" if args.the_same_num_params
                                   else "")
  root = os.path.join(args.workdir, study + ("_smoke" if args.smoke else ""))
  os.makedirs(root, exist_ok=True)
  scoring = Scoring(args.workdir, args.smoke, args.inception_weights, args.fid_samples)
  table_cells = [cell for cell in cells(args.table, args.flows)
                 if (not args.cells or cell.name in args.cells)
                 and (not args.the_same_num_params or cell.block.task == "vae")]
  jobs = [CellJob(cell, root, args.data_dir, args.smoke, args.the_same_num_params)
          for cell in table_cells]
  num_processes = args.jobs if args.jobs is not None else (2 if args.smoke else 1)
  runs = run_cells(jobs, scoring, num_processes)
  results = {
      "table": args.table, "smoke": args.smoke,
      "dataset": "CelebA 64x64" if args.table == 1 else "CIFAR-10",
      "protocol": ("The TRIP authors' protocol (configs/paper/): VAE 80,000 steps, "
                   "WGAN / WGAN-GP 20,000 generator steps at 4:1; GMM = one "
                   "full-space diagonal mixture; FID of "
                   f"{scoring.num_samples:,} samples against the test split."
                   + (" Networks narrowed so that every prior trains as many "
                      "parameters as N(0, I) (--the_same_num_params; the widths are in "
                      "the results file)." if args.the_same_num_params else "")),
      "steps_note": f"{SMOKE_STEPS} steps a cell",
  }
  markdown = render({**results, "runs": runs})
  print(markdown)
  command = results_files.command_line("benchmarks.paper_tables", argv)
  results_dir = os.path.join(root, "results") if args.smoke else args.results_dir
  paths = results_files.write(f"paper_{study}", script="benchmarks.paper_tables",
                              command=command, markdown=markdown, runs=runs,
                              results_dir=results_dir, **results)
  print("wrote " + ", ".join(paths))
  return 0


if __name__ == "__main__":
  sys.exit(main())
