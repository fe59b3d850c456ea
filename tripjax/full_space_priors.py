"""Full-space priors of the paper's baselines, as distrax distributions that condition.

* `full_gmm`: ONE mixture of K diagonal Gaussians over the whole latent space (the
  "GMM" column of the paper's tables, as the authors' code builds it): K = d * N
  components by default, means U[-1, 1], log-variances -1, logits 0, all learnable.
  Not the factorized GMM of `make_prior("gmm")` (a product of d 1-D mixtures, the
  TRIP of rank 1): this one has K components in total, that one N^d.
* `full_gaussian`: N(mean, L L^T) with a learned mean and a full covariance through its
  Cholesky factor L (the authors' Normal prior with `--train_prior`); it starts at
  N(0, I), so a frozen one (`prior.learnable = False`) is N(0, I).

The densities and draws are distrax's (`MixtureSameFamily` of `MultivariateNormalDiag`,
`MultivariateNormalTri`). What distrax does not have is conditioning, which
`tripjax.priors.Prior` promises (marginals of NaN entries, draws given some
coordinates); both families have it in closed form:

* a diagonal mixture marginalizes by dropping dimensions: log p(z_O) = logsumexp_k
  (log pi_k + sum_{j in O} log N(z_j; mu_kj, sigma_kj)), and draws given z_O pick k from
  that posterior, then the missing z_j from component k;
* a Gaussian marginalizes by dropping rows and columns of the covariance, and draws
  given z_O from N(mu_M + S_MO S_OO^-1 (z_O - mu_O), S_MM - S_MO S_OO^-1 S_OM).

Every example may miss different entries: both are computed with the masked matrices of
the example (`_masked_covariance`). When no entry is missing (training), `log_prob` is
distrax's, by one `lax.cond` on the batch.

Params are dicts of float arrays: full_gmm {"logits" (K,), "means" (K, d),
"log_variances" (K, d)}; full_gaussian {"mean" (d,), "scale_tril" (d, d)}, whose strict
lower triangle is L's and whose diagonal is log diag(L) (any values give a valid
density: L's diagonal is exp of it, the upper triangle is ignored).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import distrax
import jax
import jax.numpy as jnp

from tripjax.prior import checks

Array = jax.Array
_LOG_TWO_PI = math.log(2.0 * math.pi)
FULL_GMM_INIT_LOG_VARIANCE = -1.0
# EM of the full GMM's refit: iterations, and the floor of a component's variance.
FULL_GMM_EM_ITERATIONS = 20
MIN_VARIANCE = 1e-6


def _sample_shape(shape) -> tuple[int, ...]:
  return (shape,) if isinstance(shape, int) else tuple(shape)


# ---------------------------------------------------------------------------------------
# full_gmm: one diagonal mixture over the whole space.


def full_gmm_init(key: Array, num_variables: int, num_components: int,
                  dtype=jnp.float32) -> dict:
  """The authors' init: means U[-1, 1] (K, d), log-variances -1 (K, d), logits 0 (K,)."""
  return {
      "logits": jnp.zeros((num_components,), dtype),
      "means": jax.random.uniform(key, (num_components, num_variables), dtype, -1.0, 1.0),
      "log_variances": jnp.full((num_components, num_variables),
                                FULL_GMM_INIT_LOG_VARIANCE, dtype),
  }


def _full_gmm_scales(params: dict) -> Array:
  return jnp.exp(0.5 * params["log_variances"])


def full_gmm_distribution(params: dict) -> distrax.MixtureSameFamily:
  """The mixture as a distrax distribution, event shape (d,)."""
  return distrax.MixtureSameFamily(
      distrax.Categorical(logits=params["logits"]),
      distrax.MultivariateNormalDiag(params["means"], _full_gmm_scales(params)))


def _full_gmm_joint_log_probs(params: dict, z: Array, present: Array) -> Array:
  """log pi_k + log N(z_O; mu_kO, sigma_kO) (..., K) of z (..., d), entries O = present."""
  per_dimension = distrax.Normal(params["means"], _full_gmm_scales(params)).log_prob(
      jnp.where(present, z, 0.0)[..., None, :])                      # (..., K, d)
  marginal = jnp.sum(jnp.where(present[..., None, :], per_dimension, 0.0), axis=-1)
  return jax.nn.log_softmax(params["logits"]) + marginal


def full_gmm_log_prob(params: dict, z: Array, observed: Optional[Array] = None) -> Array:
  """log p(z_O) (...) of z (..., d): NaN entries (and `observed == False`) summed out."""
  z, present = checks.values_and_mask(z, observed, params["means"].shape[-1], "z")
  z_safe = jnp.where(present, z, 0.0)
  return jax.lax.cond(
      jnp.all(present),
      lambda: full_gmm_distribution(params).log_prob(z_safe),
      lambda: jax.nn.logsumexp(_full_gmm_joint_log_probs(params, z_safe, present), -1))


def full_gmm_sample(params: dict, key: Array, shape: Sequence[int] = (),
                    given: Optional[Array] = None,
                    observed: Optional[Array] = None) -> Array:
  """Exact draws: (*shape, d), or (*shape, *given.shape[:-1], d) from p(z_M | given_O).

  Given entries are returned unchanged; the component is drawn from its posterior
  given them, then the missing entries from that component.
  """
  shape = _sample_shape(shape)
  checks.observed_needs_given(given, observed)
  if given is None:
    return full_gmm_distribution(params).sample(seed=key, sample_shape=shape)
  given, present = checks.values_and_mask(given, observed, params["means"].shape[-1],
                                          "given")
  log_posterior = _full_gmm_joint_log_probs(params, jnp.where(present, given, 0.0),
                                            present)              # (..., K)
  component_key, noise_key = jax.random.split(key)
  batch_shape = shape + given.shape[:-1]
  components = jax.random.categorical(component_key, log_posterior, shape=batch_shape)
  noise = jax.random.normal(noise_key, batch_shape + given.shape[-1:], given.dtype)
  draws = params["means"][components] + _full_gmm_scales(params)[components] * noise
  return jnp.where(present, given, draws)


def full_gmm_refit(params: dict, z: Array, key: Optional[Array] = None,
                   num_iters: int = FULL_GMM_EM_ITERATIONS) -> dict:
  """EM for the diagonal mixture on latents z (N, d) (no NaN), from the current params.

  A component that gets (almost) no responsibility keeps its mean and variance; its
  weight goes to (almost) zero. `key` is unused (the EM is deterministic).
  """
  del key
  z = checks.float_array(z, params["means"].shape[-1], "z")
  present = jnp.ones(z.shape, bool)
  count = z.shape[0]

  def em_step(_, params):
    responsibilities = jax.nn.softmax(_full_gmm_joint_log_probs(params, z, present), -1)
    weight = jnp.sum(responsibilities, axis=0)                       # (K,)
    alive = weight > 1e-8 * count
    safe = jnp.where(alive, weight, 1.0)[:, None]
    means = responsibilities.T @ z / safe
    variances = responsibilities.T @ jnp.square(z) / safe - jnp.square(means)
    variances = jnp.maximum(variances, MIN_VARIANCE)
    return {
        "logits": jnp.log(jnp.maximum(weight / count, 1e-30)).astype(z.dtype),
        "means": jnp.where(alive[:, None], means, params["means"]),
        "log_variances": jnp.where(alive[:, None], jnp.log(variances),
                                   params["log_variances"]),
    }

  return jax.lax.fori_loop(0, num_iters, em_step, params)


# ---------------------------------------------------------------------------------------
# full_gaussian: N(mean, L L^T).


def full_gaussian_init(num_variables: int, dtype=jnp.float32) -> dict:
  """N(0, I): mean 0 and L = I (a zero `scale_tril`: its diagonal is log diag(L))."""
  return {"mean": jnp.zeros((num_variables,), dtype),
          "scale_tril": jnp.zeros((num_variables, num_variables), dtype)}


def full_gaussian_cholesky(params: dict) -> Array:
  """L (d, d): lower triangular with a positive diagonal, from any `scale_tril`."""
  raw = params["scale_tril"]
  return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(raw)))


def full_gaussian_distribution(params: dict) -> distrax.MultivariateNormalTri:
  """N(mean, L L^T) as a distrax distribution, event shape (d,)."""
  return distrax.MultivariateNormalTri(params["mean"], full_gaussian_cholesky(params))


def _masked_covariance(covariance: Array, present: Array) -> Array:
  """S_OO in the present rows/columns, the identity in the others: (..., d, d)."""
  weight = present.astype(covariance.dtype)
  masked = covariance * weight[..., :, None] * weight[..., None, :]
  return masked + jnp.eye(covariance.shape[-1], dtype=covariance.dtype) * (
      1.0 - weight[..., None, :])


def _full_gaussian_marginal_log_prob(params: dict, z: Array, present: Array) -> Array:
  cholesky = full_gaussian_cholesky(params)
  masked_cholesky = jnp.linalg.cholesky(
      _masked_covariance(cholesky @ cholesky.T, present))
  difference = jnp.where(present, z - params["mean"], 0.0)
  whitened = jax.scipy.linalg.solve_triangular(
      masked_cholesky, difference[..., None], lower=True)[..., 0]
  log_determinant = jnp.sum(jnp.log(jnp.diagonal(masked_cholesky, axis1=-2, axis2=-1)),
                            axis=-1)
  num_present = jnp.sum(present, axis=-1).astype(z.dtype)
  return (-0.5 * jnp.sum(jnp.square(whitened), axis=-1) - log_determinant
          - 0.5 * num_present * _LOG_TWO_PI)


def full_gaussian_log_prob(params: dict, z: Array,
                           observed: Optional[Array] = None) -> Array:
  """log N(z_O; mean_O, S_OO) (...) of z (..., d): NaN (or unobserved) entries summed
  out by dropping their rows and columns.

  One `lax.cond` on the whole of z: distrax's density when no entry is missing, else
  the masked marginal (a batched Cholesky). Under `vmap` the cond becomes a select that
  runs both sides, and jaxlib 0.10's batched LAPACK kernels can deadlock XLA:CPU's
  thread pool (`losses.log_importance_weights` calls priors outside its vmap for that
  reason)."""
  z, present = checks.values_and_mask(z, observed, params["mean"].shape[-1], "z")
  z_safe = jnp.where(present, z, 0.0)
  return jax.lax.cond(
      jnp.all(present),
      lambda: full_gaussian_distribution(params).log_prob(z_safe),
      lambda: _full_gaussian_marginal_log_prob(params, z_safe, present))


def full_gaussian_sample(params: dict, key: Array, shape: Sequence[int] = (),
                         given: Optional[Array] = None,
                         observed: Optional[Array] = None) -> Array:
  """Exact draws: (*shape, d), or (*shape, *given.shape[:-1], d) from p(z_M | given_O).

  Given entries are returned unchanged; the missing ones are drawn from the Gaussian
  conditional N(mu_M + S_MO S_OO^-1 (z_O - mu_O), S_MM - S_MO S_OO^-1 S_OM).
  """
  shape = _sample_shape(shape)
  checks.observed_needs_given(given, observed)
  if given is None:
    return full_gaussian_distribution(params).sample(seed=key, sample_shape=shape)
  num_variables = params["mean"].shape[-1]
  given, present = checks.values_and_mask(given, observed, num_variables, "given")
  cholesky = full_gaussian_cholesky(params)
  covariance = cholesky @ cholesky.T
  observed_factor = jnp.linalg.cholesky(_masked_covariance(covariance, present))
  weight = present.astype(given.dtype)
  difference = jnp.where(present, given - params["mean"], 0.0)
  # S P A^-1 P: A = the masked covariance, P = diag(present); A^-1 is S_OO^-1 on O.
  gain = jax.scipy.linalg.cho_solve((observed_factor, True),
                                    covariance * weight[..., :, None])
  mean = params["mean"] + jnp.einsum("...ji,...j->...i", gain, difference)
  conditional = covariance - (covariance * weight[..., None, :]) @ gain
  missing = 1.0 - weight
  conditional = (0.5 * (conditional + jnp.swapaxes(conditional, -1, -2))
                 * missing[..., :, None] * missing[..., None, :]
                 + jnp.eye(num_variables, dtype=given.dtype) * weight[..., None, :])
  conditional_factor = jnp.linalg.cholesky(conditional)
  noise = jax.random.normal(key, shape + given.shape, given.dtype)
  draws = mean + jnp.einsum("...ij,...j->...i", conditional_factor, noise)
  return jnp.where(present, given, draws)


def full_gaussian_refit(params: dict, z: Array, key: Optional[Array] = None) -> dict:
  """The maximum-likelihood mean and covariance of latents z (N, d) (no NaN); `key`
  is unused."""
  del key
  z = checks.float_array(z, params["mean"].shape[-1], "z")
  mean = jnp.mean(z, axis=0)
  centred = z - mean
  covariance = centred.T @ centred / z.shape[0]
  cholesky = jnp.linalg.cholesky(
      covariance + MIN_VARIANCE * jnp.eye(z.shape[-1], dtype=z.dtype))
  scale_tril = jnp.tril(cholesky, -1) + jnp.diag(jnp.log(jnp.diagonal(cholesky)))
  return {"mean": mean, "scale_tril": scale_tril}
