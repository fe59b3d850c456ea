"""Latent priors behind one interface: N(0, I), factorized GMM and TRIP.

Every prior is a `Prior` of pure functions over its own params pytree, so a trainer
switches priors by config. The factorized GMM of the paper's tables is exactly a TRIP of
rank 1 (the ring's trace then factorizes into a product of 1-D mixtures). `init` is the
paper's GAN initialization (section 3.3: means uniform in [-1, 1], standard deviations
1/N); the VAE re-fits means and scales to the data (`refit`). `mode_hopping` draws the
latent trajectories of Figure 5.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from tripjax import prior as trip

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


def _check_latent(z: Array, num_variables: int, name: str = "z") -> Array:
  z = jnp.asarray(z)
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise TypeError(f"{name} must be a float array, got dtype {z.dtype}.")
  if z.ndim < 1 or z.shape[-1] != num_variables:
    raise ValueError(f"{name} must have shape (..., {num_variables}), got {z.shape}.")
  return z


def normal_log_prob(num_variables: int, z: Array,
                    observed: Optional[Array] = None) -> Array:
  """log N(z_obs; 0, I) of the observed entries of z (..., d); missing entries drop out."""
  z = _check_latent(z, num_variables)
  present = trip.present_mask(z, observed)
  z_safe = jnp.where(present, z, 0.0)
  terms = -0.5 * jnp.square(z_safe) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(jnp.where(present, terms, 0.0), axis=-1)


def normal_sample(num_variables: int, key: Array, shape: Sequence[int] = (),
                  given: Optional[Array] = None, observed: Optional[Array] = None,
                  dtype=jnp.float32) -> Array:
  """Draws from N(0, I); with `given`, its present entries are kept (independence)."""
  shape = (shape,) if isinstance(shape, int) else tuple(shape)
  if given is None:
    if observed is not None:
      raise ValueError("observed was passed without given.")
    return jax.random.normal(key, (*shape, num_variables), dtype)
  given = _check_latent(given, num_variables, "given")
  present = trip.present_mask(given, observed, "given")
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
  if isinstance(num_variables, bool) or not isinstance(num_variables, int) \
      or num_variables < 1:
    raise ValueError(f"num_variables must be an integer >= 1, got {num_variables!r}.")
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


# ---------------------------------------------------------------------------------------
# Mode hopping (paper, section 6.3, Figure 5).


def _check_count(value, name: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
  return value


def mode_hopping(prior: Prior, params: Any, key: Array, num_trajectories: int,
                 num_hops: int, num_resampled: int = 5) -> Array:
  """Trajectories of latents that re-draw a few random coordinates at every hop.

  Figure 5 of the paper: start from z ~ p(z); at each hop pick `num_resampled`
  distinct random dimensions S (per trajectory) and draw z_S from the exact conditional
  p(z_S | z_rest) (`prior.sample` with `given`); the other coordinates stay exactly as
  they were. Decoding every latent of a trajectory shows which image features a few
  latent dimensions control. Every hop leaves p(z) invariant, so each z is a draw
  from the prior.

  Args:
    prior: a `Prior` (normal, gmm or trip).
    params: its parameters.
    key: PRNG key.
    num_trajectories: T.
    num_hops: H, hops after the initial sample.
    num_resampled: dimensions re-drawn per hop, 1 <= num_resampled <= d.

  Returns:
    (T, H + 1, d) latents; [:, 0] is the initial prior sample.
  """
  num_variables = prior.num_variables
  _check_count(num_trajectories, "num_trajectories", 1)
  _check_count(num_hops, "num_hops", 0)
  _check_count(num_resampled, "num_resampled", 1)
  if num_resampled > num_variables:
    raise ValueError(f"num_resampled must be <= the latent size {num_variables}, "
                     f"got {num_resampled}.")
  # The initial draw is a hop that re-draws every coordinate, so the sampler is traced
  # (and compiled) once.
  start = jax.eval_shape(lambda key: prior.sample(params, key, (num_trajectories,)), key)
  first = jnp.arange(num_hops + 1) == 0

  def hop(z, inputs):
    key, everything = inputs
    key_dims, key_sample = jax.random.split(key)
    # num_resampled distinct dims per row: the positions of its largest uniforms.
    _, dims = jax.lax.top_k(jax.random.uniform(key_dims, z.shape), num_resampled)
    resampled = jnp.any(dims[..., None] == jnp.arange(num_variables), axis=-2)
    z = prior.sample(params, key_sample, (), given=z,
                     observed=~(resampled | everything))
    return z, z

  _, path = jax.lax.scan(hop, jnp.zeros(start.shape, start.dtype),
                         (jax.random.split(key, num_hops + 1), first))
  return jnp.swapaxes(path, 0, 1)
