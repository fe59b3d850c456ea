"""The trainers' optimizers: the network's and the prior's Adams, and their restarts.

As in the authors' code, the prior has an Adam of its own with its own learning rate
(`prior.learning_rate`; None: `train.learning_rate`), and with `prior.learnable =
False` (the paper's "F") it gets no updates at all. Parameters are a dict whose
"prior" entry is the prior's; every other entry is the network's (`NETWORK`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import ml_collections
import optax

NETWORK, PRIOR = "network", "prior"  # the two parameter groups of `two_adams`

AdamFn = Callable[[float], optax.GradientTransformation]  # learning rate -> Adam


def prior_learning_rate(config: ml_collections.ConfigDict) -> float:
  """`prior.learning_rate`, or `train.learning_rate` when it is None."""
  if config.prior.learning_rate is None:
    return config.train.learning_rate
  return config.prior.learning_rate


def prior_optimizer(config: ml_collections.ConfigDict, *, learnable: bool,
                    adam: AdamFn = optax.adam) -> optax.GradientTransformation:
  """`adam(prior_learning_rate(config))`, or no updates when not `learnable`."""
  return adam(prior_learning_rate(config)) if learnable else optax.set_to_zero()


def _parameter_groups(params: dict) -> dict:
  """Labels every leaf of {"encoder", "decoder", "prior", ...} as NETWORK or PRIOR."""
  return {part: jax.tree.map(lambda _: PRIOR if part == PRIOR else NETWORK, subtree)
          for part, subtree in params.items()}


def two_adams(config: ml_collections.ConfigDict, *,
              learnable_prior: bool = True) -> optax.GradientTransformation:
  """One Adam for the network, one for the prior (`optax.multi_transform`).

  The network's learning rate is `train.learning_rate` (after clipping its gradient's
  global norm to `train.grad_clip_norm`, if set); the prior's is
  `prior_learning_rate(config)`. Parameters are {"encoder", "decoder", "prior"}.
  """
  network = optax.adam(config.train.learning_rate)
  if config.train.grad_clip_norm:
    network = optax.chain(optax.clip_by_global_norm(config.train.grad_clip_norm),
                          network)
  return optax.multi_transform(
      {NETWORK: network,
       PRIOR: prior_optimizer(config, learnable=learnable_prior)}, _parameter_groups)


def reset_optimizer_state(optimizer: optax.GradientTransformation, opt_state: Any,
                          params: dict, groups: Sequence[str] = (NETWORK, PRIOR)) -> Any:
  """The optimizer state with the given groups' moments and counts started afresh.

  After an EM refit moves the prior's means and scales, Adam's moments of the old
  values would steer the new ones; the authors' code creates both optimizers anew at
  every round. `groups` is a subset of (NETWORK, PRIOR). The fresh arrays are placed
  like the ones they replace, so the compiled step sees the same input types (and is
  not compiled again).
  """
  fresh = optimizer.init(params)
  inner_states = dict(opt_state.inner_states)
  for group in groups:
    inner_states[group] = placed_like(fresh.inner_states[group],
                                      opt_state.inner_states[group])
  return opt_state._replace(inner_states=inner_states)


def placed_like(fresh: Any, old: Any) -> Any:
  """`fresh` (a fresh optimizer state) with every array placed like its counterpart in
  `old`, so that a compiled step sees the same input types (and is not compiled
  again)."""
  return jax.tree.map(lambda new, previous: (jax.device_put(new, previous.sharding)
                                             if isinstance(previous, jax.Array)
                                             else new), fresh, old)


def reset_due(config: ml_collections.ConfigDict, progress: Any) -> bool:
  """Whether the optimizers restart after this step (a `loop.Progress`): every
  `train.reset_optimizer_every_steps` steps (0: never), not after the last one."""
  return progress.is_due(every_steps=config.train.reset_optimizer_every_steps,
                         at_end=False)
