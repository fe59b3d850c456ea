"""Unbiased gradients of an expectation E_{z~p}[f(z)] under a TRIP, two estimators.

With s the component indices and ψ the cores, the TRIP is the lattice mixture

  E_p[f] = Σ_s p_ψ(s) E_ε[f(z(s, ε))],   z_j = μ_{j s_j} + σ_{j s_j} ε_j,  ε ~ N(0, I),

(z_j = s_j for a discrete variable), where p_ψ(s) depends on the cores only. For B draws
(s_i, ε_i) with values f_i = f(z_i), both estimators below are unbiased:

* "score" (eq. 10 of the paper): ∇ E_p[f] ≈ (1/B) Σ_i (f_i - b_i) ∇ log p(z_i) for all
  parameters, z_i held fixed. b_i = Σ_{k≠i} f_k / (B - 1) is the leave-one-out baseline;
  it does not depend on draw i, so it adds no bias, and f_i - b_i = B/(B - 1) (f_i - f̄):
  the batch-mean baseline of eq. 10 times B/(B - 1). (Eq. 10 as printed, the batch-mean
  baseline alone, estimates (B - 1)/B ∇ E_p[f]; the GAN trainer keeps it.)
* "pathwise": the means and scales by the reparameterized path,
  ∂E_p[f]/∂(μ, σ) = Σ_s p_ψ(s) E_ε[∇_z f · ∂z/∂(μ, σ)] ≈ (1/B) Σ_i ∂f(z(s_i, ε_i))/∂(μ, σ),
  unbiased because drawing s (`sampling.sample_components`) does not depend on μ, σ. The
  cores by a score function with the leave-one-out baseline, μ, σ and z held fixed:
  ∂E_p[f]/∂ψ = Σ_s ∇_ψ p_ψ(s) E[f | s] = E[f(z) ∇_ψ log p_ψ(s)]. Since p(z | s) does not
  depend on ψ, E[∇_ψ log p_ψ(s) | z] = ∇_ψ log p(z) (Fisher's identity), so
  E[f(z) ∇_ψ log p(z)] is the same gradient: the score of log p(z) is the score of
  log p(s) averaged over s given z (Rao-Blackwellized), unbiased and of no larger
  variance (`benchmarks/prior_gradients.py` measures both). It is log p(z), with μ and
  σ held: their score terms would count their gradient a second time.

`expectation_gradient` is the estimator; `reparameterize`, `score_log_prob` and
`score_surrogate` are the pieces it is made of, and the GAN trainer builds its
generator-and-prior surrogate from the same pieces.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks
from tripjax.prior.densities import log_prob
from tripjax.prior.params import TRIPParams
from tripjax.prior.sampling import sample_components

Array = jax.Array
ESTIMATORS = ("score", "pathwise")
BASELINES = ("leave_one_out", "batch_mean")


class Draws(NamedTuple):
  """The randomness of B draws z ~ p: component indices and standard normal noise.

  Attributes:
    components: (..., n) int32 component indices s, exact draws from p(s).
    noise: (..., n) float ε ~ N(0, I) (unused for discrete variables).
  """
  components: Array
  noise: Array


class Estimate(NamedTuple):
  """Unbiased estimates of E_p[f] (a scalar) and of its gradient (a TRIPParams)."""
  value: Array
  gradient: TRIPParams


def check_estimator(estimator: str, name: str = "estimator") -> str:
  """`estimator` if it is one of ESTIMATORS, else a ValueError naming the choices."""
  if estimator not in ESTIMATORS:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, ESTIMATORS))}, got "
                     f"{estimator!r}.")
  return estimator


def draw(params: TRIPParams, key: Array, num_samples: int) -> Draws:
  """Exact draws of the components s (B, n) and the noise ε (B, n) for B = num_samples.

  `reparameterize(params, draw(params, key, B))` is distributed as `sample(params, key,
  (B,))` (not the same numbers: the two split their randomness differently).
  """
  num_samples = checks.positive_int(num_samples, "num_samples")
  components_key, noise_key = jax.random.split(key)
  components = sample_components(params, components_key, (num_samples,))
  noise = jax.random.normal(noise_key, components.shape, params.means.dtype)
  return Draws(components, noise)


def reparameterize(params: TRIPParams, draws: Draws) -> Array:
  """z = μ_s + σ_s ε (s for discrete variables): (..., n), differentiable in μ and σ."""
  n = params.num_variables
  components = draws.components
  variable_index = jnp.arange(n)
  means = params.means[variable_index, components]
  scales = jnp.exp(params.log_scales[variable_index, components])
  continuous = means + scales * draws.noise.astype(means.dtype)
  return jnp.where(np.asarray(params.discrete), components.astype(means.dtype), continuous)


def score_log_prob(params: TRIPParams, z: Array, estimator: str) -> Array:
  """log p(z) (...) whose gradient is the estimator's score-function term.

  z is held fixed; with "pathwise" the means and scales are held too (they get their
  gradient from the path), so only the cores get a score term.
  """
  check_estimator(estimator)
  if estimator == "pathwise":
    params = dataclasses.replace(params, means=jax.lax.stop_gradient(params.means),
                                 log_scales=jax.lax.stop_gradient(params.log_scales))
  return log_prob(params, jax.lax.stop_gradient(z))


def score_surrogate(log_probs: Array, values: Array, *,
                    baseline: str = "leave_one_out") -> Array:
  """A scalar whose gradient is the score-function estimate of ∇ E_p[f].

  gradient = (1/B) Σ_i (f_i - b_i) ∇ log p(z_i), the values f_i held fixed, with
  b_i = Σ_{k≠i} f_k / (B - 1) ("leave_one_out": unbiased) or b_i = f̄ ("batch_mean",
  eq. 10 as printed: (B - 1)/B times the unbiased estimate, as b_i contains f_i).

  Args:
    log_probs: (B,) log p(z_i), differentiable in the parameters.
    values: (B,) f(z_i); their gradient is stopped.
    baseline: "leave_one_out" or "batch_mean".

  Returns:
    Scalar; only its gradient has a meaning.
  """
  if baseline not in BASELINES:
    raise ValueError(f"baseline must be one of {', '.join(map(repr, BASELINES))}, got "
                     f"{baseline!r}.")
  log_probs, values = jnp.asarray(log_probs), jnp.asarray(values)
  if log_probs.ndim != 1 or values.shape != log_probs.shape:
    raise ValueError(f"log_probs and values must both have shape (B,); got "
                     f"{log_probs.shape} and {values.shape}.")
  batch = values.shape[0]
  if baseline == "leave_one_out" and batch < 2:
    raise ValueError(f"the leave-one-out baseline needs B >= 2 values, got {batch}.")
  values = jax.lax.stop_gradient(values)
  advantages = values - jnp.mean(values)
  if baseline == "leave_one_out":
    advantages = advantages * (batch / (batch - 1))
  return jnp.mean(advantages * log_probs)


def expectation_gradient(params: TRIPParams, key: Array, f: Callable[[Array], Array],
                         num_samples: int, *, estimator: str) -> Estimate:
  """Unbiased estimates of E_{z~p}[f(z)] and of its gradient in params (module docstring).

  Args:
    params: TRIPParams over n variables.
    key: PRNG key of the draws (`draw(params, key, num_samples)`).
    f: z (B, n) -> (B,) values; differentiable in z for "pathwise" (discrete entries
      of z are the components as floats and carry no gradient).
    num_samples: B >= 2 draws (the leave-one-out baseline needs two).
    estimator: "score" or "pathwise".

  Returns:
    Estimate(value: scalar mean of f over the draws, gradient: TRIPParams like params,
    the estimated gradient of E_p[f] in core_roots, means and log_scales).
  """
  check_estimator(estimator)
  num_samples = checks.positive_int(num_samples, "num_samples")
  if num_samples < 2:
    raise ValueError(f"num_samples must be >= 2 (the leave-one-out baseline), got "
                     f"{num_samples}.")
  draws = draw(params, key, num_samples)

  def surrogate(params):
    z = reparameterize(params, draws)
    if estimator == "score":
      z = jax.lax.stop_gradient(z)
    values = jnp.asarray(f(z))
    if values.shape != (num_samples,):
      raise ValueError(f"f must map z of shape {z.shape} to values of shape "
                       f"({num_samples},), got {values.shape}.")
    log_probs = score_log_prob(params, z, estimator)
    return jnp.mean(values) + score_surrogate(log_probs, values), values

  gradient, values = jax.grad(surrogate, has_aux=True)(params)
  return Estimate(jnp.mean(values), gradient)
