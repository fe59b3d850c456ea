"""What the loop's on-device non-finite check costs, and what handing back the state would.

  python -m benchmarks.step_guard [--repeats 7] [--batch 128]

The VAE train step at the paper's CelebA setting (`benchmarks.vae_step`'s model, N(0, I)
prior) compiled four ways, taking turns within every repeat, median step in ms:

* "plain": `jax.jit` of the step with the shardings of the loop, no donation (the loop
  before its renovation);
* "plain, donated": the same with the state donated;
* "loop": `tripjax.training.loop.compile_step` (donated; the step key folded in and the
  first non-finite step recorded on the device), what the trainers run;
* "select", "cond": the loop's step that also hands back the previous state when a
  metric is not finite, by a `jnp.where` over every leaf of the state or by one
  `lax.cond` (what the loop does not do: README, "Speed of the training steps").
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import vae_step
from configs import celeba_vae_trip
from tripjax.training import loop
from tripjax.training import rng as rng_lib
from tripjax.training import sharding
from tripjax.training import vae


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=7)
  common.add_devices_flag(parser)
  args = parser.parse_args(argv)
  common.set_cpu_devices(args.devices, [args.batch])
  mesh = sharding.make_data_mesh()
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  config = celeba_vae_trip.get_config()
  model = vae_step.build_paper_model("normal", 100, 10, 20)
  optimizer = vae.make_optimizer(config)
  train_step = vae.make_train_step(model, optimizer)

  def plain(state, guard, batch, key):
    state, metrics = train_step(state, batch, rng_lib.step_key(key, guard.steps_done))
    return state, loop.StepGuard(guard.steps_done + 1, guard.first_bad_step), metrics

  def handing_back(choose):
    def step(state, guard, batch, key):
      new_state, new_guard, metrics = loop.guard_step(train_step)(state, guard, batch,
                                                                  key)
      finite = jnp.logical_and(new_guard.first_bad_step == 0,
                               guard.first_bad_step == 0)
      return choose(finite, new_state, state), new_guard, metrics
    return step

  def select(keep, new, old):
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

  def cond(keep, new, old):
    return jax.lax.cond(keep, lambda: new, lambda: old)

  shardings = dict(in_shardings=(replicated, replicated, split, replicated),
                   out_shardings=replicated)
  steps = {
      "plain": jax.jit(plain, **shardings),
      "plain, donated": jax.jit(plain, donate_argnums=(0, 1), **shardings),
      "loop": loop.compile_step(train_step, mesh),
      "select": jax.jit(handing_back(select), donate_argnums=(0, 1), **shardings),
      "cond": jax.jit(handing_back(cond), donate_argnums=(0, 1), **shardings),
  }
  pixels = np.random.default_rng(0).integers(0, 256, (args.batch,) + vae_step.IMAGE_SHAPE)
  batch = sharding.shard_batch({"image": (pixels / 255.0).astype(np.float32)}, mesh)
  key = sharding.replicate(jax.random.PRNGKey(1), mesh)
  carries = {}
  for name, step in steps.items():  # compile + one warm-up step each
    carry = (sharding.replicate(vae.init_state(model, optimizer, jax.random.PRNGKey(0)),
                                mesh), loop.new_guard(0, mesh))
    for _ in range(2):
      *carry, _ = step(*carry, batch, key)
      jax.block_until_ready(carry)
    carries[name] = carry
  times: dict[str, list[float]] = {name: [] for name in steps}
  for _ in range(args.repeats):
    for name, step in steps.items():
      start = time.perf_counter()
      *carry, metrics = step(*carries[name], batch, key)
      jax.block_until_ready((carry, metrics))
      times[name].append(time.perf_counter() - start)
      carries[name] = carry
  baseline = statistics.median(times["plain"])
  print(f"VAE step, batch {args.batch}, {mesh.devices.size} device(s), median of "
        f"{args.repeats}; {common.load_average()}\n")
  print("| step | ms | / plain |\n|---|---|---|")
  for name, values in times.items():
    median = statistics.median(values)
    print(f"| {name} | {median * 1e3:.1f} | {median / baseline:.3f} |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
