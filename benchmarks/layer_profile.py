"""What the profile scripts share: layers found by running a model, each timed alone
forward and forward + VJP next to its PyTorch twin, and the table they print.

`benchmarks.vae_profile` and `benchmarks.gan_profile` build their rows (`Piece`) from
these and add their own (the likelihood, the Adam update, the critic's penalty).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclasses.dataclass
class Piece:
  """One row of the table: its tripjax and PyTorch forward and forward+backward."""
  name: str
  shapes: str
  jax_forward: Callable[[], object] | None
  jax_backward: Callable[[], object]
  torch_forward: Callable[[], object] | None
  torch_backward: Callable[[], object]


def record_layers(module: nn.Module, params: dict, *inputs) -> list:
  """(name, unbound layer, its params, its input) of every direct sublayer with
  parameters that `module` calls, in call order."""
  calls = []

  def interceptor(next_fun, args, kwargs, context):
    layer = context.module
    parent = layer.parent
    if (context.method_name == "__call__" and isinstance(parent, nn.Module)
        and not isinstance(parent.parent, nn.Module) and layer.name in params):
      calls.append((layer.name, layer.clone(parent=None, name=None),
                    params[layer.name], args[0]))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    module.apply({"params": params}, *inputs)
  return calls


def _random_like(rng: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
  return (scale * rng.normal(size=shape)).astype(np.float32)


def _nchw_shape(shape) -> tuple:
  return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def _shape_text(input_shape, output_shape) -> str:
  return (f"{'x'.join(map(str, input_shape[1:]))} -> "
          f"{'x'.join(map(str, output_shape[1:]))}")


def _output_and_vjp(forward, params, x, cotangent):
  """The layer's output and its VJP (returned, so that XLA cannot drop the forward
  pass, which the gradients of a linear layer do not need)."""
  output, vjp = jax.vjp(forward, params, x)
  return output, vjp(cotangent)


def layer_pieces(part: str, layers: list, torch_layers: dict, seed: int) -> list[Piece]:
  """Forward and forward+VJP of every recorded layer and of its PyTorch twin."""
  import torch  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  pieces = []
  for name, layer, params, layer_input in layers:
    x = jnp.asarray(layer_input)

    def forward(params, x, layer=layer):
      return layer.apply({"params": params}, x)

    output_shape = jax.eval_shape(forward, params, x).shape
    cotangent = jnp.asarray(_random_like(rng, output_shape))
    jax_forward = jax.jit(forward)
    jax_backward = jax.jit(lambda params, x, cotangent, forward=forward:
                           _output_and_vjp(forward, params, x, cotangent))

    torch_layer = torch_layers[f"{part}/{name}"]
    torch_x = torch.from_numpy(_random_like(rng, _nchw_shape(x.shape)))
    torch_x.requires_grad_(True)
    torch_cotangent = torch.from_numpy(_random_like(rng, _nchw_shape(output_shape)))
    weights = tuple(torch_layer.parameters())

    def torch_forward(torch_layer=torch_layer, torch_x=torch_x):
      with torch.no_grad():
        return torch_layer(torch_x)

    def torch_backward(torch_layer=torch_layer, torch_x=torch_x,
                       torch_cotangent=torch_cotangent, weights=weights):
      return torch.autograd.grad(torch_layer(torch_x), (torch_x,) + weights,
                                 torch_cotangent)

    pieces.append(Piece(
        f"{part} {name}", _shape_text(x.shape, output_shape),
        lambda f=jax_forward, p=params, x=x: f(p, x),
        lambda f=jax_backward, p=params, x=x, c=cotangent: f(p, x, c),
        torch_forward, torch_backward))
  return pieces


def time_pieces(pieces: list[Piece], repeats: int, clock: Callable[[], float]) -> dict:
  """Median seconds of every callable of every piece; all take turns each repeat."""
  calls = {}
  for piece in pieces:
    for kind in ("jax_forward", "jax_backward", "torch_forward", "torch_backward"):
      if getattr(piece, kind) is not None:
        calls[(piece.name, kind)] = getattr(piece, kind)
  for call in calls.values():  # compile and warm up
    jax.block_until_ready(call())
    jax.block_until_ready(call())
  times = {key: [] for key in calls}
  for _ in range(repeats):
    for key, call in calls.items():
      start = clock()
      jax.block_until_ready(call())
      times[key].append(clock() - start)
  return {key: statistics.median(values) for key, values in times.items()}


def parse_args(description: str, argv: Sequence[str] | None, *, batch: int
               ) -> argparse.Namespace:
  """The profile scripts' flags (--batch, --latent, --repeats, --clock, --devices,
  default 1), parsed; then the CPU devices set (`common.set_cpu_devices`)."""
  parser = argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=batch)
  parser.add_argument("--latent", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                      help="wall-clock ms, or this process's CPU ms (all threads)")
  common.add_devices_flag(parser, default=1)
  args = parser.parse_args(argv)
  common.set_cpu_devices(args.devices, [args.batch])
  return args


def print_table(title: str, pieces: Sequence[Piece], medians: dict,
                total: str | None = None) -> None:
  """A markdown table of the pieces' median ms and tripjax's fwd+bwd over PyTorch's.

  With `total` (the name of a piece that contains all those before it, e.g. the train
  step), a "rest" row first gives its time minus theirs.
  """
  import torch  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  print(f"\n{title}; tripjax on {len(devices)} {devices[0].platform} device(s), torch "
        f"{torch.__version__} with {torch.get_num_threads()} thread(s); "
        f"{common.load_average()}.\n")
  print("| piece | shapes | tripjax fwd | tripjax fwd+bwd | torch fwd | "
        "torch fwd+bwd | fwd+bwd tripjax / torch |")
  print("|---|---|---|---|---|---|---|")
  totals = {"jax_backward": 0.0, "torch_backward": 0.0}
  for piece in pieces:
    row = {kind: medians.get((piece.name, kind)) for kind in (
        "jax_forward", "jax_backward", "torch_forward", "torch_backward")}
    if piece.name != total:
      for kind in totals:
        totals[kind] += row[kind]
    else:
      print(f"| rest (total - pieces) | | | "
            f"{1e3 * (row['jax_backward'] - totals['jax_backward']):.1f} | | "
            f"{1e3 * (row['torch_backward'] - totals['torch_backward']):.1f} | |")
    cells = ["" if value is None else f"{1e3 * value:.1f}" for value in row.values()]
    ratio = row["jax_backward"] / row["torch_backward"]
    print(f"| {piece.name} | {piece.shapes} | {' | '.join(cells)} | {ratio:.2f} |")
