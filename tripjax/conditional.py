"""Conditional generation given any subset of attributes (paper, section 4, Figure 3).

A request is a float array (a,) of attribute value indices with NaN for the attributes
left unspecified, built from "NAME=VALUE" strings by `parse_attribute_request` (the
`--attr` flag). With the joint TRIP p(z, y) the unspecified attributes are summed out
and z ~ p(z | y_given) is drawn exactly (`JointPrior.sample_joint`); with any other
`tripjax.priors.LatentPrior`, a prior over z alone (the baseline CVAEs' N(0, I)),
z ~ p(z) and the decoder alone sees the request.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import numpy as np

from tripjax import priors
from tripjax.data import AttributeSpec

Array = jax.Array
# (z (num, d), attributes (num, a) with NaN = unspecified) -> images (num, H, W, C).
DecodeFn = Callable[[Array, "Array | np.ndarray"], Array]


def _names(specs: Sequence[AttributeSpec]) -> str:
  return ", ".join(spec.name for spec in specs)


def parse_attribute_request(specs: Sequence[AttributeSpec],
                            assignments: Sequence[str]) -> np.ndarray:
  """["Male=1", "Eyeglasses=1"] -> (a,) float32 value indices, NaN where not given.

  Args:
    specs: the dataset's attributes (`tripjax.data.attribute_specs`).
    assignments: "NAME=VALUE" strings, VALUE one of the attribute's value names;
      none at all asks for unconditional samples (all NaN).

  Raises:
    ValueError: a malformed assignment, an unknown name or value (the message lists
      the valid ones), or an attribute given twice.
  """
  if isinstance(assignments, str):
    raise TypeError("assignments must be a sequence of 'NAME=VALUE' strings, got one "
                    f"string {assignments!r}; wrap it in a list.")
  by_name = {spec.name: index for index, spec in enumerate(specs)}
  request = np.full(len(specs), np.nan, np.float32)
  for assignment in assignments:
    name, separator, value = str(assignment).partition("=")
    name, value = name.strip(), value.strip()
    if not separator or not name or not value:
      raise ValueError(f"attribute request {assignment!r} is not NAME=VALUE; valid "
                       f"names: {_names(specs)}.")
    if name not in by_name:
      raise ValueError(f"unknown attribute {name!r}; valid names: {_names(specs)}.")
    spec = specs[by_name[name]]
    if value not in spec.value_names:
      raise ValueError(f"attribute {name!r} has no value {value!r}; valid values: "
                       f"{', '.join(spec.value_names)}.")
    if not np.isnan(request[by_name[name]]):
      raise ValueError(f"attribute {name!r} is given twice.")
    request[by_name[name]] = spec.value_names.index(value)
  return request


def format_attribute_request(specs: Sequence[AttributeSpec], request) -> str:
  """The inverse of `parse_attribute_request`: "Male=1, Eyeglasses=1" ("" if none)."""
  request = np.asarray(request)
  return ", ".join(f"{spec.name}={spec.value_names[int(value)]}"
                   for spec, value in zip(specs, request) if not np.isnan(value))


@functools.partial(jax.jit, static_argnames=("prior", "shape"))
def _joint_latents(prior: priors.JointPrior, params, key: Array, request: Array,
                   shape: tuple) -> Array:
  """z of `prior.sample_joint` given the request, compiled once per prior and shape."""
  return prior.sample_joint(params, key, shape, given_attributes=request).latents


def sample_latents_given_attributes(prior: priors.LatentPrior, params, key: Array,
                                    request, num: int | None = None) -> Array:
  """z ~ p(z | y_given) by exact conditional sampling, unspecified attributes summed out.

  Args:
    prior: a `JointPrior` (conditional draws), or any other `LatentPrior` over z
      alone, which ignores the request (the baseline CVAEs, whose decoder takes
      the attributes).
    params: the prior's params.
    key: PRNG key.
    request: (a,) one request for all `num` draws, or (n, a) one request per draw
      (then `num` is None or n); float, NaN = unspecified.
    num: number of draws for a single request.

  Returns:
    (num, d) latents (or (n, d) for per-draw requests).

  Raises:
    ValueError: bad shapes, or a request that has probability zero under the prior.
  """
  request = np.asarray(request, np.float32)
  if request.ndim == 1 and num is None:
    raise ValueError("num is required for a single request of shape (a,).")
  if request.ndim == 2 and num not in (None, request.shape[0]):
    raise ValueError(f"num={num} does not match the {request.shape[0]} requests.")
  if request.ndim not in (1, 2):
    raise ValueError(f"request must have shape (a,) or (n, a), got {request.shape}.")
  shape = (num,) if request.ndim == 1 else ()
  if isinstance(prior, priors.JointPrior):
    if request.shape[-1] != prior.num_attributes:
      raise ValueError(f"request must have {prior.num_attributes} attributes, got "
                       f"shape {request.shape}.")
    z = _joint_latents(prior, params, key, request, shape)
    if np.any(np.isnan(np.asarray(z))):
      raise ValueError("the requested attributes have probability zero under the "
                       "prior; ask for a subset of them.")
    return z
  return prior.sample(params, key, (num or request.shape[0],))


def sample_images_given_attributes(prior: priors.LatentPrior, params, key: Array,
                                   request, decode_fn: DecodeFn,
                                   num: int | None = None) -> Array:
  """Images given attributes: z from `sample_latents_given_attributes`, then decoded.

  Args:
    prior, params, key, request, num: as `sample_latents_given_attributes`.
    decode_fn: (z (n, d), attributes (n, a), NaN = unspecified) -> images (n, ...).
      The VAE-TRIP decoder ignores the attributes; the baselines' use them.

  Returns:
    (n, ...) images.
  """
  z = sample_latents_given_attributes(prior, params, key, request, num)
  request = np.asarray(request, np.float32)
  attributes = np.broadcast_to(request, (z.shape[0], request.shape[-1]))
  return decode_fn(z, attributes)
