"""Argument checks shared by tripjax.prior and tripjax.priors: one message per mistake.

Each check raises a short error that names the argument, the bad value and what is
accepted, and returns the value in the form the caller computes with.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def positive_int(value, name: str) -> int:
  """`value` as an int; raises ValueError unless it is an integer >= 1 (bools are not)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
  return int(value)


def float_array(x, num_variables: int, name: str = "x") -> Array:
  """x as a jax array of shape (..., num_variables) and a float dtype, else an error."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a float array (discrete values as floats, NaN for "
                    f"missing), got dtype {x.dtype}.")
  if x.ndim < 1 or x.shape[-1] != num_variables:
    raise ValueError(f"{name} must have shape (..., {num_variables}) for "
                     f"{num_variables} variables, got {x.shape}.")
  return x


def present_mask(x: Array, observed: Optional[Array] = None, name: str = "x") -> Array:
  """Boolean mask of the entries of x that count as observed: not NaN and `observed`.

  The observed set of Algorithm 1: the other variables are summed out (w_jk = 1, eq. 2).

  Args:
    x: (..., n) float array, NaN for missing entries.
    observed: optional boolean array of x's shape (or broadcastable to it).
    name: how error messages call x.

  Returns:
    (..., n) boolean mask.
  """
  present = ~jnp.isnan(x)
  if observed is not None:
    observed = jnp.asarray(observed)
    if observed.dtype != jnp.bool_:
      raise TypeError(f"observed must be a boolean array, got dtype {observed.dtype}.")
    if observed.shape != x.shape:
      try:
        observed = jnp.broadcast_to(observed, x.shape)
      except ValueError:
        raise ValueError(f"observed has shape {observed.shape}, which does not match "
                         f"{name} of shape {x.shape}.") from None
    present = present & observed
  return present


def values_and_mask(x, observed, num_variables: int,
                    name: str = "x") -> tuple[Array, Array]:
  """The checked float array x (..., n) and its present mask (..., n)."""
  x = float_array(x, num_variables, name)
  return x, present_mask(x, observed, name)


def observed_needs_given(given, observed) -> None:
  """Sampling functions take `observed` only as the mask of a `given` array."""
  if given is None and observed is not None:
    raise ValueError("observed was passed without given.")
