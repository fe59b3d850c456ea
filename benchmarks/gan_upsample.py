"""Generator forward + backward time: parity transposed convs vs lax.conv_transpose.

  python -m benchmarks.gan_upsample                  # paper 64x64x3 generator, batch 64
  python -m benchmarks.gan_upsample --batch 16 --repeats 3

The paper's generator (`tripjax.models.gan.paper_generator_critic`: Dense to 4x4x512,
four 5x5 stride-2 transposed convs 512 -> 256 -> 128 -> 64 -> 3) is built twice, with
`parity_upsampling=True` (four stride-1 convs per layer, one per output parity) and
False (`jax.lax.conv_transpose`, the plain definition); both compute the same function
with the same parameters. Timed: value and gradient w.r.t. the parameters and z of a
scalar of the images (a generator step without the critic), jitted, after compilation
and one warm-up call; the variants take turns within every repeat. Reported: median
and min seconds, and the ratio of medians.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.models import gan

VARIANTS = {"parity": True, "conv_transpose": False}


def make_step(parity: bool, batch: int):
  """A jitted fwd+bwd of the paper generator, its params and latents."""
  generator = gan.Generator(image_shape=(64, 64, 3), widths=gan.PAPER_WIDTHS,
                            parity_upsampling=parity)
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, gan.PAPER_LATENT_DIM))
  params = jax.jit(generator.init)(jax.random.PRNGKey(1), z)
  weights = jax.random.normal(jax.random.PRNGKey(2), (batch, 64, 64, 3))

  def loss(params, z):
    return jnp.mean(generator.apply(params, z) * weights)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), params, z


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  steps = {name: make_step(parity, args.batch) for name, parity in VARIANTS.items()}
  times = {name: [] for name in VARIANTS}
  for name, (step, params, z) in steps.items():
    start = time.perf_counter()
    jax.block_until_ready(step(params, z))
    print(f"{name}: compile + first call {time.perf_counter() - start:.1f} s", flush=True)
  for _ in range(args.repeats):
    for name, (step, params, z) in steps.items():
      start = time.perf_counter()
      jax.block_until_ready(step(params, z))
      times[name].append(time.perf_counter() - start)
  print(f"\nGenerator fwd+bwd, 64x64x3, batch {args.batch}, {jax.default_backend()}, "
        f"{args.repeats} repeats")
  print(f"{'variant':<16}{'median s':>10}{'min s':>10}")
  for name, values in times.items():
    print(f"{name:<16}{statistics.median(values):>10.3f}{min(values):>10.3f}")
  ratio = statistics.median(times["conv_transpose"]) / statistics.median(times["parity"])
  print(f"conv_transpose / parity (medians): {ratio:.1f}x")
  gradients = [steps[name][0](*steps[name][1:]) for name in VARIANTS]
  difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      *(jax.tree_util.tree_leaves(g) for g in gradients)))
  print(f"max |gradient difference| between the variants: {difference:.2e}")
  return 0 if np.isfinite(difference) else 1


if __name__ == "__main__":
  raise SystemExit(main())
