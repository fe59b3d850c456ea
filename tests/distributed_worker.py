"""One process of the 2-process test in tests/test_distributed.py (not a test itself).

Runs two gradient steps of a linear least-squares model on a global batch that each
process reads half of, checkpoints and restores with orbax (also past a damaged
newest checkpoint), stops on a SIGTERM that only process 1 receives, and writes
what it computed to --out (.npz).
"""
import argparse
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.training import checkpoints
from tripjax.training import distributed
from tripjax.training import preemption
from tripjax.training import sharding

BATCH_SIZE = 8
LEARNING_RATE = 0.1


def problem():
  """(params, batch) of the test: least squares with 3 features, 8 examples."""
  rng = np.random.default_rng(0)
  params = {"w": rng.normal(size=(3,)).astype(np.float32), "b": np.float32(0.5)}
  batch = {"x": rng.normal(size=(BATCH_SIZE, 3)).astype(np.float32),
           "y": rng.normal(size=(BATCH_SIZE,)).astype(np.float32)}
  return params, batch


def train_step(params, batch):
  def loss_fn(params):
    residuals = batch["x"] @ params["w"] + params["b"] - batch["y"]
    return jnp.mean(residuals ** 2)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), loss


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--coordinator_address")
  parser.add_argument("--num_processes", type=int)
  parser.add_argument("--process_id", type=int)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  # No flags: JAX's cluster detection (the test simulates a SLURM job step).
  distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)

  mesh = sharding.make_data_mesh()
  params, full_batch = problem()
  rows = distributed.process_slice(BATCH_SIZE, mesh)
  batch = sharding.shard_batch(
      {name: value[rows] for name, value in full_batch.items()}, mesh)
  replicated = sharding.replicated(mesh)
  step = jax.jit(train_step, in_shardings=(replicated, sharding.batch_sharded(mesh)),
                 out_shardings=replicated)
  state = sharding.replicate(params, mesh)
  losses = []
  checkpointer = checkpoints.Checkpointer(args.workdir)
  for step_number in (1, 2):
    state, loss = step(state, batch)
    losses.append(distributed.to_host(loss))
    checkpointer.save(step_number, {"params": state})
  checkpointer.wait()
  distributed.sync("saved")
  if distributed.is_main_process():  # Damages the newest: all must fall back to 1.
    open(os.path.join(checkpointer.directory, "2", "default", "_METADATA"), "w").close()
  distributed.sync("damaged")
  result = checkpointer.restore_newest_valid(
      {"params": sharding.replicate(params, mesh)})
  checkpointer.close()
  with preemption.StopRequest(announce=False) as stop:
    stops = []
    for step_number in range(3):
      if step_number == 1 and jax.process_index() == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # Reaches process 1 only.
      stops.append(stop.should_stop(step_number))
    started = time.perf_counter()
    for step_number in range(3, 23):
      stop.should_stop(step_number)  # Agreed already: no communication.
    agreed_seconds = (time.perf_counter() - started) / 20
  with preemption.StopRequest(announce=False) as no_signal:
    started = time.perf_counter()
    for step_number in range(20):
      no_signal.should_stop(step_number)  # One all-gather each.
    sync_seconds = (time.perf_counter() - started) / 20
  np.savez(args.out, **{
      "stops": np.asarray(stops), "stop_signal": np.asarray(stop.signal_name),
      "stop_requested_here": np.asarray(stop.requested),
      "stop_exit_code": np.asarray(stop.stopped(1).exit_code),
      "sync_seconds": np.asarray(sync_seconds),
      "agreed_seconds": np.asarray(agreed_seconds),
      "rows": np.asarray([rows.start, rows.stop]),
      "losses": np.asarray(losses),
      "w": distributed.to_host(state["w"]), "b": distributed.to_host(state["b"]),
      "restored_step": np.asarray(result.step),
      "restored_w": distributed.to_host(result.tree["params"]["w"]),
      "skipped": np.asarray([s.step for s in result.skipped]),
      "moved_to": np.asarray([s.moved_to for s in result.skipped]),
      "gathered_x": distributed.to_host(batch["x"]),
      "any_process": np.asarray(distributed.any_process(jax.process_index() == 1)),
      "all_processes": np.asarray(distributed.all_processes(jax.process_index() == 1)),
      "process_count": np.asarray(jax.process_count()),
      "device_count": np.asarray(jax.device_count()),
  })
  print("WORKER_OK", jax.process_index(), flush=True)


if __name__ == "__main__":
  main()
