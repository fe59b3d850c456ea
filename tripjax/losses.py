"""VAE objectives in nats: reparameterized Gaussian posterior, ELBO with MC KL, IWAE.

All functions are pure and work per example; callers average over the batch.

Notation (paper, section 3.1, eqs. 6-8):
  q(z|x) = N(z | mean(x), exp(log_scale(x))^2)    (diagonal Gaussian encoder)
  log w  = log p(x|z) + log p(z) - log q(z|x),    z = mean + exp(log_scale) * eps
  ELBO   = E_q[log w]                 = E_q[log p(x|z)] - KL(q(z|x) || p(z))
  IWAE_k = E[log (1/k) sum_i w_i]     >= ELBO, -> log p(x) as k -> infinity
The KL is estimated by Monte Carlo (log q(z|x) - log p(z) at the sampled z), so any prior
with a `log_prob` works, TRIP included.

Conditional VAE-TRIP (paper, section 4, eq. 14), y_obs the observed attributes of x:
  bound  = E_q[log p(x|z) + log p(y_obs|z)] - KL(q(z|x) || p(z))   <= log p(x, y_obs)
with the unconditional encoder q(z|x), log p(y_obs|z) = log p(z, y_obs) - log p(z) from
the joint prior (missing attributes summed out exactly, no imputation) and the same MC KL.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

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

  def terms_for_one_sample(z_sample):  # (batch, d) -> 3 x (batch,)
    return (log_likelihood_fn(z_sample), prior_log_prob_fn(z_sample),
            gaussian_log_prob(z_sample, mean, log_scale))

  return LogWeights(*_map_over_samples(terms_for_one_sample, z, samples_per_chunk))


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
