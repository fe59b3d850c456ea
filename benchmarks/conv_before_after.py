"""The VAE step with plain autodiff convolutions ("old"), with the custom-VJP stride-2
layers but the decoder's first layer as a plain VALID transposed convolution
("conv_project"), with every layer of tripjax.models.layers ("new"), and PyTorch,
interleaved:

  python -m benchmarks.conv_before_after --devices 2 --batch 128 --repeats 7
"""
import argparse, contextlib, time
parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--batch", type=int, default=128)
parser.add_argument("--repeats", type=int, default=7)
parser.add_argument("--variants", nargs="+",
                    default=["old", "conv_project", "new", "torch"])
args = parser.parse_args()
from benchmarks import common
common.set_cpu_devices(args.devices, [args.batch])
import jax
from benchmarks import vae_step
from tripjax.models import layers
from tripjax.training import sharding

def _plain_project(x, kernel):
  return jax.lax.conv_transpose(x, kernel, (1, 1), "VALID",
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))


@contextlib.contextmanager
def plain(strided: bool):
  """While tracing: the decoder's first layer as lax.conv_transpose and, with `strided`,
  the stride-2 layers with XLA's own gradients."""
  names = ("conv_halving", "conv_transpose_doubling", "conv_transpose_from_point")
  saved = [getattr(layers, name) for name in names]
  layers.conv_transpose_from_point = _plain_project
  if strided:
    layers.conv_halving = layers._strided_convolution
    layers.conv_transpose_doubling = layers._parity_convolutions
  try:
    yield
  finally:
    for name, value in zip(names, saved):
      setattr(layers, name, value)

mesh = sharding.make_data_mesh()
steps = {}
for v in args.variants:
  t0 = time.perf_counter()
  if v == "torch":
    steps[v] = vae_step.make_torch_step(args.batch, 100, common.cpu_threads()).step
  else:
    timer = vae_step.StepTimer("normal", batch=args.batch, latent_dim=100, num_components=1, rank=1, mesh=mesh)
    with (plain(strided=v == "old") if v in ("old", "conv_project")
          else contextlib.nullcontext()):
      timer.step()
    timer.step(); timer.step()
    steps[v] = timer.step
  print(v, "ready", round(time.perf_counter() - t0, 1), "s", flush=True)
times = common.interleaved(steps, args.repeats)
print(f"\nbatch {args.batch}, {len(jax.devices())} device(s), torch threads {common.cpu_threads()}, median of {args.repeats}; {common.load_average()}")
base = common.median_ms(times[args.variants[-1]])
for v in args.variants:
  m = common.median_ms(times[v])
  print(f"| {v} | {m:.1f} ms | min {1e3*min(times[v]):.1f} | / {args.variants[-1]} {m/base:.2f} |")
