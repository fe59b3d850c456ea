"""Named random streams: every key of a training run comes from its seed, here.

The seed's key is split once into one key per stream (`STREAMS`), and each purpose of a
run draws from its own stream: the initial parameters from "init", the train steps from
"train_step" (step i gets `step_key(stream, i)`, inside the compiled step), the
evaluations from "evaluation", and so on. A stream's keys are its key folded with
indices (`RandomStreams.key("refit", step)`), so keys of two streams never coincide
(they descend from distinct outputs of one split) and no key serves two purposes.

Keys are raw `uint32` arrays (`jax.random.PRNGKey` style, threefry), except the init
stream's (`RandomStreams.init_key`): an RBG key, because XLA:CPU compiles a model's
random initializers several times faster with RBG keys than with threefry keys (each
threefry initializer inlines its rounds).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Every purpose a run draws random numbers for, one stream each. Appending a name keeps
# the keys of the existing streams (`jax.random.split` with the threefry-partitionable
# default draws key i independently of the count).
STREAMS = (
    "init",           # initial parameters (RBG, `init_key`)
    "train_step",     # the train steps: `step_key(stream key, step)` in the step
    "evaluation",     # test bounds, the same key at every evaluation
    "refit",          # prior refits (paper 3.1), by the step they follow
    "image_grid",     # prior samples in the image grids
    "request",        # conditional samples for the condition violation rate
    "sample_metric",  # samples scored by a metric during training (classifier FD)
    "mode_hopping",   # mode-hopping pictures of a trained run
    "imputer",        # the predictor that imputes hidden labels ("cvae_imputed")
)


class RandomStreams:
  """The named streams of one seed.

  Attributes:
    seed: the run's seed (`config.train.seed`).
  """

  def __init__(self, seed: int):
    self.seed = seed
    keys = jax.random.split(jax.random.PRNGKey(seed), len(STREAMS))
    self._keys = dict(zip(STREAMS, keys))

  def key(self, stream: str, *indices: int) -> jax.Array:
    """The key of `stream` folded with `indices` in order: (2,) uint32.

    Raises:
      ValueError: no such stream.
    """
    if stream not in self._keys:
      raise ValueError(f"no random stream {stream!r}; streams: {', '.join(STREAMS)}.")
    key = self._keys[stream]
    for index in indices:
      key = jax.random.fold_in(key, index)
    return key

  def init_key(self) -> jax.Array:
    """The "init" stream as an RBG key (a typed key array of shape ()).

    RBG keys give other numbers than threefry keys (and XLA's RBG generator may
    differ between backends); only the cost of compiling the initializers differs.
    """
    bits = jax.random.bits(self.key("init"), (4,), jnp.uint32)
    return jax.random.wrap_key_data(bits, impl="rbg")


def step_key(stream_key: jax.Array, step: jax.Array | int) -> jax.Array:
  """The key of train step `step` (0-based: the steps done before it) of a stream."""
  return jax.random.fold_in(stream_key, step)
