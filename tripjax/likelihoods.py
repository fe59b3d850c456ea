"""Decoder likelihoods p(x|z): proper densities over the pixel values (in nats), and the
authors' squared error.

* `bernoulli_log_prob`: for binarized images (pixels exactly 0 or 1; the "digits" and
  "mnist" sets are binarized with the fixed threshold 0.5 in `tripjax.data`).
* `discretized_logistic_log_prob`: for 8-bit images scaled to [0, 1] (values k/255):
  a logistic density integrated over 256 bins of width 1/255, the edge bins extended
  to -inf and +inf (PixelCNN++, Salimans et al. 2017), so each pixel's 256
  probabilities sum to 1.

* `squared_error_log_prob`: the TRIP authors' reconstruction term -sum (x_hat - x)^2
  over pixels and channels, with x mapped from [0, 1] to [-1, 1] (`to_signed_range`):
  a unit-variance Gaussian decoder without its normalizing constant. It is not a
  density over the pixel values, so a bound with it is not in nats and is comparable
  only with bounds of the same term (the paper's Table 1 VAE column).

All sum over the last `event_ndims` axes (the pixels, default (H, W, C)) and keep the
leading batch axes, so a (K, B, H, W, C) input gives (K, B) log-probabilities.

`log_likelihood` / `likelihood_mean` dispatch by name on a decoder's raw output, whose
last axis holds `num_params_per_channel(name) * C` channels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LIKELIHOODS = ("bernoulli", "discretized_logistic", "squared_error")
NUM_BINS = 256
# Floor of the logistic log-scale in `log_likelihood` (PixelCNN++ uses -7 on [-1, 1]).
MIN_LOG_SCALE = -7.0

_NUM_PARAMS_PER_CHANNEL = {"bernoulli": 1, "discretized_logistic": 2, "squared_error": 1}


def _sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
  if event_ndims == 0:
    return values
  return jnp.sum(values, axis=tuple(range(-event_ndims, 0)))


@functools.partial(jax.jit, static_argnames=("event_ndims",))
def bernoulli_log_prob(logits: jax.Array, x: jax.Array, *,
                       event_ndims: int = 3) -> jax.Array:
  """log Bernoulli(x | sigmoid(logits)), summed over the last `event_ndims` axes.

  Args:
    logits: (..., H, W, C) real.
    x: (..., H, W, C) with values 0 or 1 (broadcasts against `logits`).

  Returns:
    (...,) log-probabilities in nats: sum of x * logits - softplus(logits).
  """
  return _sum_event(x * logits - jax.nn.softplus(logits), event_ndims)


@functools.partial(jax.jit, static_argnames=("num_bins", "event_ndims"))
def discretized_logistic_log_prob(loc: jax.Array, log_scale: jax.Array,
                                  x: jax.Array, *, num_bins: int = NUM_BINS,
                                  event_ndims: int = 3) -> jax.Array:
  """log of a logistic(loc, exp(log_scale)) integrated over the bin of x.

  The bins are centred on k / (num_bins - 1), k = 0..num_bins-1, with half-width
  1 / (2 (num_bins - 1)); the first bin extends to -inf and the last to +inf, so
  the probabilities of the `num_bins` values sum to 1 for every pixel.

  Args:
    loc: (..., H, W, C) logistic location, on the [0, 1] pixel scale.
    log_scale: (..., H, W, C) log of the logistic scale.
    x: (..., H, W, C) pixels in [0, 1] on the grid k / (num_bins - 1).
    num_bins: number of pixel values (256 for 8-bit images).

  Returns:
    (...,) log-probabilities in nats.
  """
  # Bin edges from the bin index, so neighbouring bins share bit-identical edges
  # and the probabilities telescope to 1 in float32 too.
  bin_index = jnp.round(x * (num_bins - 1))
  inverse_scale = jnp.exp(-log_scale)
  upper = inverse_scale * ((bin_index + 0.5) / (num_bins - 1) - loc)
  lower = inverse_scale * ((bin_index - 0.5) / (num_bins - 1) - loc)
  # Stable log(sigmoid(upper) - sigmoid(lower)):
  # sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)).
  log_mass_interior = (jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower)
                       + jnp.log(-jnp.expm1(lower - upper)))
  log_mass_first_bin = jax.nn.log_sigmoid(upper)    # P(X <= upper edge)
  log_mass_last_bin = jax.nn.log_sigmoid(-lower)    # P(X > lower edge)
  log_mass = jnp.where(
      bin_index <= 0, log_mass_first_bin,
      jnp.where(bin_index >= num_bins - 1, log_mass_last_bin, log_mass_interior))
  return _sum_event(log_mass, event_ndims)


def to_signed_range(x: jax.Array) -> jax.Array:
  """Images in [0, 1] -> [-1, 1] (2x - 1), the range of the authors' squared error."""
  return 2.0 * x - 1.0


@functools.partial(jax.jit, static_argnames=("event_ndims",))
def squared_error_log_prob(reconstruction: jax.Array, x: jax.Array, *,
                           event_ndims: int = 3) -> jax.Array:
  """-sum (x_hat - x)^2 over the last `event_ndims` axes, x on the [-1, 1] scale.

  Args:
    reconstruction: (..., H, W, C) x_hat, the decoder's raw output ([-1, 1] scale).
    x: (..., H, W, C) images in [0, 1] (mapped to [-1, 1] here).

  Returns:
    (...,) -sum (x_hat - (2x - 1))^2: twice log N(2x - 1; x_hat, I) plus a constant,
    not a log-density of the pixel values.
  """
  return _sum_event(-jnp.square(reconstruction - to_signed_range(x)), event_ndims)


def num_params_per_channel(likelihood: str) -> int:
  """Decoder output channels per image channel: 1 (logits) or 2 (loc, log_scale)."""
  _check_likelihood(likelihood)
  return _NUM_PARAMS_PER_CHANNEL[likelihood]


def split_decoder_output(likelihood: str, decoder_output: jax.Array
                         ) -> tuple[jax.Array, ...]:
  """(..., H, W, P*C) -> P arrays (..., H, W, C): (logits,) or (loc, log_scale)."""
  num_params = num_params_per_channel(likelihood)
  if decoder_output.shape[-1] % num_params:
    raise ValueError(f"{likelihood}: decoder output has {decoder_output.shape[-1]} "
                     f"channels, not a multiple of {num_params}.")
  return tuple(jnp.split(decoder_output, num_params, axis=-1))


def log_likelihood(likelihood: str, decoder_output: jax.Array, x: jax.Array, *,
                   event_ndims: int = 3) -> jax.Array:
  """log p(x|z) in nats from the decoder's raw output.

  Args:
    likelihood: one of `LIKELIHOODS`.
    decoder_output: (..., H, W, P*C), P = `num_params_per_channel(likelihood)`.
      For "discretized_logistic" the first C channels are the location and the
      next C the log-scale (floored at `MIN_LOG_SCALE`).
    x: (..., H, W, C) images in [0, 1].

  Returns:
    (...,) log-probabilities.
  """
  params = split_decoder_output(likelihood, decoder_output)
  if likelihood == "bernoulli":
    (logits,) = params
    return bernoulli_log_prob(logits, x, event_ndims=event_ndims)
  if likelihood == "squared_error":
    return squared_error_log_prob(params[0], x, event_ndims=event_ndims)
  loc, log_scale = params
  return discretized_logistic_log_prob(
      loc, jnp.maximum(log_scale, MIN_LOG_SCALE), x, event_ndims=event_ndims)


def likelihood_mean(likelihood: str, decoder_output: jax.Array) -> jax.Array:
  """An image (..., H, W, C) in [0, 1] to show for the decoder output.

  Bernoulli: the mean sigmoid(logits). Discretized logistic: the location clipped
  to [0, 1] (its median, which is close to the mean for small scales). Squared error:
  x_hat mapped from [-1, 1] back to [0, 1], clipped.
  """
  params = split_decoder_output(likelihood, decoder_output)
  if likelihood == "bernoulli":
    return jax.nn.sigmoid(params[0])
  if likelihood == "squared_error":
    return jnp.clip(0.5 * (params[0] + 1.0), 0.0, 1.0)
  return jnp.clip(params[0], 0.0, 1.0)


def _check_likelihood(likelihood: str) -> None:
  if likelihood not in _NUM_PARAMS_PER_CHANNEL:
    raise ValueError(f"Unknown likelihood {likelihood!r}; valid: "
                     f"{', '.join(LIKELIHOODS)}.")
