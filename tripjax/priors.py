"""Latent priors behind one interface: N(0, I), factorized GMM and TRIP.

Every prior is a `Prior` of pure functions over its own params pytree, so a trainer
switches priors by config. The factorized GMM of the paper's tables is exactly a TRIP of
rank 1 (the ring's trace then factorizes into a product of 1-D mixtures).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from tripjax import prior as trip
from tripjax.prior import checks

Array = jax.Array
PRIOR_KINDS = ("normal", "gmm", "trip")


class Prior(NamedTuple):
  """A latent prior over `num_variables` real variables.

  Attributes:
    kind: "normal", "gmm" or "trip".
    num_variables: d, the latent size.
    init: key -> params pytree.
    log_prob: (params, z (..., d), observed=None) -> (...); NaN entries marginalized.
    sample: (params, key, shape=(), given=None, observed=None) -> (*shape, d).
    refit: (params, z (N, d), key) -> params, the data-driven re-initialization of the
      component means and scales; None where the prior has none (N(0, I)).
  """
  kind: str
  num_variables: int
  init: Callable[[Array], Any]
  log_prob: Callable[..., Array]
  sample: Callable[..., Array]
  refit: Optional[Callable[[Any, Array, Array], Any]]


# ---------------------------------------------------------------------------------------
# N(0, I) with the same function shapes as tripjax.prior.


def normal_log_prob(num_variables: int, z: Array,
                    observed: Optional[Array] = None) -> Array:
  """log N(z_obs; 0, I) of the observed entries of z (..., d); missing entries drop out."""
  z, present = checks.values_and_mask(z, observed, num_variables, "z")
  z_safe = jnp.where(present, z, 0.0)
  terms = -0.5 * jnp.square(z_safe) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(jnp.where(present, terms, 0.0), axis=-1)


def normal_sample(num_variables: int, key: Array, shape: Sequence[int] = (),
                  given: Optional[Array] = None, observed: Optional[Array] = None,
                  dtype=jnp.float32) -> Array:
  """Draws from N(0, I); with `given`, its present entries are kept (independence)."""
  shape = (shape,) if isinstance(shape, int) else tuple(shape)
  checks.observed_needs_given(given, observed)
  if given is None:
    return jax.random.normal(key, (*shape, num_variables), dtype)
  given, present = checks.values_and_mask(given, observed, num_variables, "given")
  noise = jax.random.normal(key, (*shape, *given.shape), given.dtype)
  return jnp.where(present, given, noise)


# ---------------------------------------------------------------------------------------


def make_prior(kind: str, num_variables: int, *, num_components: int = 10,
               rank: int = 20, dtype=jnp.float32) -> Prior:
  """Builds a prior by name.

  Args:
    kind: "normal" (N(0, I)), "gmm" (factorized GMM = TRIP of rank 1) or "trip".
    num_variables: latent size d.
    num_components: components per latent variable (gmm, trip).
    rank: TRIP core size m (trip only; gmm is rank 1).
    dtype: parameter dtype.

  Returns:
    A `Prior`.
  """
  if kind not in PRIOR_KINDS:
    raise ValueError(f"unknown prior kind {kind!r}; expected one of {PRIOR_KINDS}.")
  num_variables = checks.positive_int(num_variables, "num_variables")
  if kind == "normal":
    return Prior(
        kind=kind,
        num_variables=num_variables,
        init=lambda key: {},
        log_prob=lambda params, z, observed=None: normal_log_prob(
            num_variables, z, observed),
        sample=lambda params, key, shape=(), given=None, observed=None: normal_sample(
            num_variables, key, shape, given, observed, dtype),
        refit=None)

  variables = [trip.Continuous(num_components)] * num_variables
  ring_rank = 1 if kind == "gmm" else rank

  def refit(params, z, key=None):
    return trip.refit_components(params, z, key=key)

  return Prior(
      kind=kind,
      num_variables=num_variables,
      init=lambda key: trip.init(key, variables, rank=ring_rank, dtype=dtype),
      log_prob=trip.log_prob,
      sample=trip.sample,
      refit=refit)
