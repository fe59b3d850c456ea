"""VAE (in nats) and GAN objectives: ELBO, IWAE, REINFORCE surrogate (eq. 10), WGAN(-GP).

All functions are pure and work per example; callers average over the batch (the GAN
functions below return batch means, but couple examples only through those means, so a
batch sharded over devices gives the same values).

VAE notation (paper, section 3.1, eqs. 6-8):
  q(z|x) = N(z | mean(x), exp(log_scale(x))^2)    (diagonal Gaussian encoder)
  log w  = log p(x|z) + log p(z) - log q(z|x),    z = mean + exp(log_scale) * eps
  ELBO   = E_q[log w]                 = E_q[log p(x|z)] - KL(q(z|x) || p(z))
  IWAE_k = E[log (1/k) sum_i w_i]     >= ELBO, -> log p(x) as k -> infinity
The KL is estimated by Monte Carlo (log q(z|x) - log p(z) at the sampled z), so any prior
with a `log_prob` works, TRIP included.

GAN notation (paper, section 3.3, eq. 10; WGAN: Arjovsky et al.; WGAN-GP: Gulrajani et
al.): a critic D scores images, the generator G maps z ~ p_psi(z) to images. The critic
minimizes E[D(G(z))] - E[D(x)] under a Lipschitz constraint (weight clipping, or the
gradient penalty E[(||grad D(x_hat)|| - 1)^2]); the generator minimizes -E[D(G(z))] by
the pathwise gradient. A learnable prior gets no pathwise gradient (the sampled z are
constants to it) but the score-function gradient of eq. 10,
  (1 - 1/B) grad_psi E_p[r(z)] ~ (1/B) sum_i (r_i - mean_j r_j) grad_psi log p_psi(z_i),
with r the per-example generator loss (-D(G(z_i)) for WGAN), z_i ~ p_psi.

Conditional VAE-TRIP (paper, section 4, eq. 14), y_obs the observed attributes of x:
  bound  = E_q[log p(x|z) + log p(y_obs|z)] - KL(q(z|x) || p(z))   <= log p(x, y_obs)
with the unconditional encoder q(z|x), log p(y_obs|z) = log p(z, y_obs) - log p(z) from
the joint prior (missing attributes summed out exactly, no imputation) and the same MC KL.
"""
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tripjax.prior import gradients as trip_gradients

Array = jax.Array
# z (batch, d) -> log p(x|z) (batch,), x fixed by closure.
LogLikelihoodFn = Callable[[Array], Array]
# z (..., d) -> log p(z) (...).
PriorLogProbFn = Callable[[Array], Array]
# z (batch, d) -> (log p(z), log p(y_obs|z)), each (batch,), y_obs fixed by closure
# (e.g. `JointPrior.log_prob_parts`).
JointLogProbFn = Callable[[Array], tuple[Array, Array]]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(z: Array, mean: Array, log_scale: Array) -> Array:
  """log N(z | mean, diag(exp(log_scale))^2), summed over the last axis.

  Args:
    z: (..., d) points.
    mean: (..., d), broadcastable against `z`.
    log_scale: (..., d) log standard deviations, broadcastable against `z`.

  Returns:
    (...) log densities in nats.
  """
  standardized = (z - mean) * jnp.exp(-log_scale)
  per_dim = -0.5 * jnp.square(standardized) - log_scale - _HALF_LOG_TWO_PI
  return jnp.sum(per_dim, axis=-1)


def sample_gaussian(key: Array, mean: Array, log_scale: Array,
                    num_samples: int) -> Array:
  """Reparameterized samples z = mean + exp(log_scale) * eps (paper eq. 6).

  Args:
    key: PRNG key.
    mean: (batch, d).
    log_scale: (batch, d).
    num_samples: k, number of samples per example.

  Returns:
    (k, batch, d) samples, differentiable w.r.t. `mean` and `log_scale`.
  """
  noise = jax.random.normal(key, (num_samples,) + mean.shape, mean.dtype)
  return mean + jnp.exp(log_scale) * noise


class LogWeights(NamedTuple):
  """Per-sample terms of log w = log p(x|z) + log p(z) - log q(z|x); each (k, batch)."""
  log_likelihood: Array
  log_prior: Array
  log_posterior: Array

  @property
  def log_weight(self) -> Array:
    return self.log_likelihood + self.log_prior - self.log_posterior


def log_importance_weights(key: Array, mean: Array, log_scale: Array,
                           log_likelihood_fn: LogLikelihoodFn,
                           prior_log_prob_fn: PriorLogProbFn, num_samples: int,
                           samples_per_chunk: int | None = None) -> LogWeights:
  """Draws k reparameterized z ~ q(z|x) and evaluates the terms of log w.

  The decoder (`log_likelihood_fn`) runs on one (batch, d) slice of z at a time (vmapped
  over `samples_per_chunk` slices when given), so k = 100 fits in memory.

  Args:
    key: PRNG key.
    mean, log_scale: (batch, d) parameters of q(z|x).
    log_likelihood_fn: z (batch, d) -> log p(x|z) (batch,).
    prior_log_prob_fn: z (..., d) -> log p(z) (...).
    num_samples: k.
    samples_per_chunk: how many of the k samples to decode at once (None: one).

  Returns:
    LogWeights with fields of shape (k, batch).
  """
  z = sample_gaussian(key, mean, log_scale, num_samples)  # (k, batch, d)

  def terms_for_one_sample(z_sample):  # (batch, d) -> 2 x (batch,)
    return (log_likelihood_fn(z_sample), gaussian_log_prob(z_sample, mean, log_scale))

  log_likelihood, log_posterior = _map_over_samples(terms_for_one_sample, z,
                                                    samples_per_chunk)
  # The prior sees all k samples at once, not under the chunks' vmap: a prior that
  # branches on its whole input (full_gaussian's `lax.cond` on "no entry missing")
  # keeps that a branch, where vmap would run both sides (a batched Cholesky there,
  # which deadlocks XLA:CPU's thread pool in jaxlib 0.10: see full_space_priors).
  return LogWeights(log_likelihood, prior_log_prob_fn(z), log_posterior)


def _map_over_samples(terms_fn: Callable, z: Array,
                      samples_per_chunk: int | None = None):
  """terms_fn on each (batch, d) slice of z (k, batch, d); outputs stacked to (k, ...)."""
  if z.shape[0] == 1:
    return jax.tree.map(lambda term: term[None], terms_fn(z[0]))
  return jax.lax.map(terms_fn, z, batch_size=samples_per_chunk)


class ElboTerms(NamedTuple):
  """Per-example ELBO and its parts, each (batch,), in nats."""
  elbo: Array
  log_likelihood: Array  # MC estimate of E_q[log p(x|z)]
  kl: Array  # MC estimate of KL(q(z|x) || p(z)) = E_q[log q(z|x) - log p(z)]


def elbo(key: Array, mean: Array, log_scale: Array,
         log_likelihood_fn: LogLikelihoodFn, prior_log_prob_fn: PriorLogProbFn,
         num_samples: int = 1) -> ElboTerms:
  """Monte-Carlo ELBO (paper eq. 8) with l = `num_samples` reparameterized samples.

  Args:
    key: PRNG key.
    mean, log_scale: (batch, d) parameters of q(z|x).
    log_likelihood_fn: z (batch, d) -> log p(x|z) (batch,).
    prior_log_prob_fn: z (..., d) -> log p(z) (...).
    num_samples: l, samples averaged per example.

  Returns:
    ElboTerms with (batch,) fields; elbo = log_likelihood - kl.
  """
  terms = log_importance_weights(key, mean, log_scale, log_likelihood_fn,
                                 prior_log_prob_fn, num_samples)
  log_likelihood = jnp.mean(terms.log_likelihood, axis=0)
  kl = jnp.mean(terms.log_posterior - terms.log_prior, axis=0)
  return ElboTerms(elbo=log_likelihood - kl, log_likelihood=log_likelihood, kl=kl)


class ConditionalElboTerms(NamedTuple):
  """Per-example terms of the conditional bound (paper eq. 14), each (batch,), in nats."""
  bound: Array
  log_likelihood: Array  # MC estimate of E_q[log p(x|z)]
  attribute_log_likelihood: Array  # MC estimate of E_q[log p(y_obs|z)]
  kl: Array  # MC estimate of KL(q(z|x) || p(z))


def conditional_elbo(key: Array, mean: Array, log_scale: Array,
                     log_likelihood_fn: LogLikelihoodFn,
                     joint_log_prob_fn: JointLogProbFn,
                     num_samples: int = 1) -> ConditionalElboTerms:
  """Monte-Carlo lower bound on log p(x, y_obs) of the conditional VAE-TRIP (eq. 14).

  The z samples are those of `elbo` with the same key, so with every attribute missing
  (log p(y_obs|z) = 0) the bound equals `elbo` with the prior's log p(z).

  Args:
    key: PRNG key.
    mean, log_scale: (batch, d) parameters of the unconditional encoder q(z|x).
    log_likelihood_fn: z (batch, d) -> log p(x|z) (batch,).
    joint_log_prob_fn: z (batch, d) -> (log p(z), log p(y_obs|z)), each (batch,).
    num_samples: l, samples averaged per example.

  Returns:
    ConditionalElboTerms with (batch,) fields;
    bound = log_likelihood + attribute_log_likelihood - kl.
  """
  z = sample_gaussian(key, mean, log_scale, num_samples)  # (k, batch, d)

  def terms_for_one_sample(z_sample):  # (batch, d) -> 3 x (batch,)
    log_prior, attribute_log_likelihood = joint_log_prob_fn(z_sample)
    kl = gaussian_log_prob(z_sample, mean, log_scale) - log_prior
    return log_likelihood_fn(z_sample), attribute_log_likelihood, kl

  log_likelihood, attribute_log_likelihood, kl = jax.tree.map(
      lambda term: jnp.mean(term, axis=0), _map_over_samples(terms_for_one_sample, z))
  return ConditionalElboTerms(
      bound=log_likelihood + attribute_log_likelihood - kl,
      log_likelihood=log_likelihood,
      attribute_log_likelihood=attribute_log_likelihood, kl=kl)


def log_mean_exp(values: Array, axis: int = 0) -> Array:
  """log(mean(exp(values))) along `axis`, stable for large |values|."""
  return (jax.nn.logsumexp(values, axis=axis)
          - jnp.log(jnp.asarray(values.shape[axis], values.dtype)))


def iwae_bound(key: Array, mean: Array, log_scale: Array,
               log_likelihood_fn: LogLikelihoodFn,
               prior_log_prob_fn: PriorLogProbFn, num_samples: int,
               samples_per_chunk: int | None = None) -> Array:
  """Importance-weighted bound log (1/k) sum_i w_i (Burda et al.; paper Table 1, k = 100).

  With the same key, k = 1 gives exactly the one-sample `elbo`.

  Args:
    key: PRNG key.
    mean, log_scale: (batch, d) parameters of q(z|x).
    log_likelihood_fn: z (batch, d) -> log p(x|z) (batch,).
    prior_log_prob_fn: z (..., d) -> log p(z) (...).
    num_samples: k.
    samples_per_chunk: how many of the k samples to decode at once (None: one).

  Returns:
    (batch,) bound in nats.
  """
  terms = log_importance_weights(key, mean, log_scale, log_likelihood_fn,
                                 prior_log_prob_fn, num_samples,
                                 samples_per_chunk)
  return log_mean_exp(terms.log_weight, axis=0)


# ---------------------------------------------------------------------------------------
# GANs.


def score_function_surrogate(log_prob: Array, rewards: Array,
                             normalize: bool = False) -> Array:
  """REINFORCE surrogate of eq. 10, with the batch-mean reward as baseline.

  Its gradient with respect to whatever produced `log_prob` is
    (1/B) sum_i (r_i - mean(r)) grad log p(z_i),
  which estimates (1 - 1/B) grad E_p[r(z)] without bias (the baseline contains r_i
  itself): `tripjax.prior.score_surrogate` with baseline "batch_mean", whose
  "leave_one_out" baseline (B/(B - 1) times this) is unbiased. Minimizing it with
  r = the per-example generator loss trains the prior as eq. 10. The rewards carry no
  gradient. Pass z that carry no gradient into the prior's parameters either
  (`jax.lax.stop_gradient` on the samples), or the pathwise term is added to the
  score-function one.

  Args:
    log_prob: (B,) log p(z_i), differentiable in the prior's parameters.
    rewards: (B,) rewards r_i (e.g. -D(G(z_i))).
    normalize: also divide the centered rewards by their standard deviation over the
      batch (ddof 0; constant rewards give a zero gradient), as the authors' code does.

  Returns:
    Scalar surrogate; only its gradient has a meaning.
  """
  log_prob, rewards = jnp.asarray(log_prob), jnp.asarray(rewards)
  if log_prob.ndim != 1 or rewards.shape != log_prob.shape:
    raise ValueError(f"log_prob and rewards must both have shape (B,); got "
                     f"{log_prob.shape} and {rewards.shape}.")
  rewards = jax.lax.stop_gradient(rewards)
  if normalize:
    std = jnp.std(rewards)
    rewards = rewards / jnp.where(std > 0, std, 1.0)
  return trip_gradients.score_surrogate(log_prob, rewards, baseline="batch_mean")


def wgan_critic_loss(real_scores: Array, fake_scores: Array) -> Array:
  """E[D(G(z))] - E[D(x)] for scores (B,) and (B',): the critic minimizes it."""
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wgan_generator_loss(fake_scores: Array) -> Array:
  """-E[D(G(z))] for scores (B,): the generator minimizes it."""
  return -jnp.mean(fake_scores)


def random_interpolates(key: Array, real: Array, fake: Array) -> Array:
  """x_hat = eps * real + (1 - eps) * fake with one eps ~ U(0, 1) per example.

  Args:
    key: PRNG key.
    real, fake: (B, ...) images of equal shape.

  Returns:
    (B, ...) interpolates.
  """
  if real.shape != fake.shape:
    raise ValueError(f"real and fake must have the same shape; got {real.shape} and "
                     f"{fake.shape}.")
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return eps * real + (1.0 - eps) * fake


def per_example_gradient_norms(critic_fn: Callable[[Array], Array],
                               points: Array) -> Array:
  """||grad_x D(x_b)||_2 over all pixels and channels, for every example b.

  The gradient of sum_b D(x_b) is the per-example gradient for a critic whose score b
  depends on example b only (layer norm or no norm; not batch norm in training mode).
  A zero gradient has norm 0 and a finite (zero) derivative.

  Args:
    critic_fn: images (B, ...) -> scores (B,), parameters closed over.
    points: (B, ...) images.

  Returns:
    (B,) norms.
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(points)
  return _norm_of_squared(jnp.sum(jnp.square(grads).reshape(points.shape[0], -1),
                                  axis=-1))


def _norm_of_squared(squared: Array) -> Array:
  """sqrt(squared), with 0 (and a finite, zero derivative) where squared is 0."""
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


PENALTY_NORMS = ("per_example", "per_pixel")  # `gradient_penalty_at`'s `norm`


def per_pixel_gradient_norms(critic_fn: Callable[[Array], Array],
                             points: Array) -> Array:
  """||grad_x D(x_b)[h, w, :]||_2 over the channel axis, for every example and pixel.

  The TRIP authors' penalty takes the norm over the channels only. As
  `per_example_gradient_norms`, for a critic whose score b depends on example b only;
  a zero gradient has norm 0 and a finite (zero) derivative.

  Args:
    critic_fn: images (B, ..., C) -> scores (B,), parameters closed over.
    points: (B, ..., C) images, e.g. (B, H, W, C).

  Returns:
    (B, ...) norms, e.g. (B, H, W).
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(points)
  return _norm_of_squared(jnp.sum(jnp.square(grads), axis=-1))


def gradient_penalty(critic_fn: Callable[[Array], Array], real: Array, fake: Array,
                     key: Array, weight: float = 10.0) -> Array:
  """WGAN-GP's weight * E[(||grad_x D(x_hat)||_2 - 1)^2] at random interpolates.

  Args:
    critic_fn: images (B, ...) -> scores (B,), parameters closed over (differentiate
      the penalty through it for the critic's gradient).
    real, fake: (B, ...) images; pass fake with `jax.lax.stop_gradient`.
    key: PRNG key for the interpolation weights (`random_interpolates`).
    weight: lambda, 10 in the paper's runs.

  Returns:
    Scalar penalty.
  """
  return gradient_penalty_at(critic_fn, random_interpolates(key, real, fake), weight)


def gradient_penalty_at(critic_fn: Callable[[Array], Array], points: Array,
                        weight: float = 10.0, norm: str = "per_example") -> Array:
  """weight * E[(||grad_x D(x_b)||_2 - 1)^2] at given points, e.g. interpolates drawn
  in advance with `random_interpolates`.

  Args:
    critic_fn: images (B, ...) -> scores (B,), parameters closed over.
    points: (B, ...) images.
    weight: lambda.
    norm: "per_example" (WGAN-GP: the norm over all of an example's pixels and
      channels, the mean over examples) or "per_pixel" (the TRIP authors' code: the
      norm over the channel axis at each pixel, the mean over examples and pixels).

  Returns:
    Scalar penalty.
  """
  if norm == "per_example":
    norms = per_example_gradient_norms(critic_fn, points)
  elif norm == "per_pixel":
    norms = per_pixel_gradient_norms(critic_fn, points)
  else:
    raise ValueError(f"norm must be one of {PENALTY_NORMS}, got {norm!r}.")
  return weight * jnp.mean(jnp.square(norms - 1.0))


def clip_weights(params: Any, clip_value: float) -> Any:
  """WGAN's weight clipping: every parameter projected onto [-clip_value, clip_value].

  Apply to the critic's `params` collection after each update (the WGAN authors clip
  all of the critic's parameters, batch-norm scales and biases included); running
  `batch_stats` are statistics, not parameters, and are left alone.

  Args:
    params: pytree of arrays.
    clip_value: c > 0 (0.01 in the WGAN paper).

  Returns:
    The clipped pytree (`optax.projections.projection_linf_ball`, the box [-c, c]; its
    `projection_box` fails on scalar bounds in optax 0.2.8).
  """
  if isinstance(clip_value, (int, float)) and not clip_value > 0:
    raise ValueError(f"clip_value must be > 0, got {clip_value!r}.")
  return optax.projections.projection_linf_ball(params, clip_value)
