"""Benchmark of tripjax.prior: median wall time after compilation, printed as a table.

  python -m benchmarks.prior                 # 1 and 2 host devices, both settings
  python -m benchmarks.prior --devices 1 --settings paper --batch 4096   # e.g. on a GPU

Settings: "paper" is d=100 variables × N=10 components, rank m=20, batch 128 (the
paper's CelebA setting); "large" is d=1000, batch 1024. With --devices 2 on a CPU the
batch is sharded over two host devices (XLA_FLAGS=--xla_force_host_platform_device_count)
with a NamedSharding, which is how XLA:CPU uses both cores for the batched matmuls.
"sample compile (s)" is the wall time of sample's first (compiling) call less one run.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {"paper": (100, 10, 20, 128), "large": (1000, 10, 20, 1024)}


def _time(fn, *args, repeats: int, budget_s: float = 10.0) -> tuple[float, float]:
  """(median wall time of `repeats` calls after two warm-up calls (fewer, but at least 3,
  when they would take longer than `budget_s`), wall time of the first, compiling call)."""
  import jax
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))                     # compile
  first = time.perf_counter() - start
  jax.block_until_ready(fn(*args))
  times = []
  while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2], first


def run_setting(name: str, batch: int, repeats: int) -> dict:
  """Times the four operations in this process; returns milliseconds."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  import tripjax.prior as trip

  d, k, m, default_batch = SETTINGS[name]
  batch = batch or default_batch
  devices = jax.devices()
  mesh = Mesh(np.array(devices), ("batch",))
  batch_sharding = NamedSharding(mesh, P("batch"))
  replicated = NamedSharding(mesh, P())

  params = trip.init(jax.random.PRNGKey(0), [trip.Continuous(k)] * d, rank=m)
  params = jax.device_put(params, replicated)
  z = jax.random.normal(jax.random.PRNGKey(1), (batch, d))
  z = jax.device_put(z, batch_sharding)

  log_prob = jax.jit(trip.log_prob)
  loss = lambda p, x: -jnp.mean(trip.log_prob(p, x))
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  posterior = jax.jit(trip.posterior_weights)

  def sample(p, key):
    return trip.sample(p, key, (batch,))
  sample = jax.jit(sample, out_shardings=batch_sharding)
  key = jax.random.PRNGKey(2)
  row = {
      "setting": f"d={d} N={k} m={m} B={batch}",
      "devices": f"{len(devices)}x{devices[0].platform}",
      "log_prob": 1e3 * _time(log_prob, params, z, repeats=repeats)[0],
      "log_prob+grad": 1e3 * _time(grad, params, z, repeats=repeats)[0],
      "posterior_weights": 1e3 * _time(posterior, params, z, repeats=repeats)[0],
  }
  sample_s, sample_first_s = _time(sample, params, key, repeats=repeats)
  row["sample(B)"] = 1e3 * sample_s
  # The first call compiles: its time less one run is the compile time.
  row["sample compile (s)"] = sample_first_s - sample_s
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--devices", type=int, nargs="*", default=[1, 2],
                      help="host device counts to run (each in its own process)")
  parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
  parser.add_argument("--batch", type=int, default=0, help="override the batch size")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.child:
    rows = [run_setting(name, args.batch, args.repeats) for name in args.settings]
    print(json.dumps(rows))
    return

  rows = []
  for count in args.devices:
    env = dict(os.environ)
    if count > 1:
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                          f" --xla_force_host_platform_device_count={count}").strip()
    command = [sys.executable, "-m", "benchmarks.prior", "--child",
               "--settings", *args.settings, "--batch", str(args.batch),
               "--repeats", str(args.repeats)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    rows += json.loads(output.stdout.strip().splitlines()[-1])
    print(json.dumps(rows[-len(args.settings):]), file=sys.stderr, flush=True)

  columns = list(rows[0])
  header = "| " + " | ".join(c if i < 2 or c.endswith(" (s)") else f"{c} (ms)"
                             for i, c in enumerate(columns))
  print(header + " |")
  print("|" + "---|" * len(columns))
  for row in rows:
    cells = [row[c] if isinstance(row[c], str) else f"{row[c]:.2f}" for c in columns]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
