"""A TRIP as a `distrax.Distribution`.

`tripjax.prior` imports this module (and distrax) on first access of
`tripjax.prior.Distribution`. `tripjax.priors.DistraxPrior(..., make_distribution=
Distribution)` makes it a `tripjax.priors.LatentPrior`.
"""

from __future__ import annotations

from typing import Any

import distrax
import jax

from tripjax.prior.densities import log_prob
from tripjax.prior.densities import posterior_weights
from tripjax.prior.params import TRIPParams
from tripjax.prior.sampling import sample

Array = jax.Array


class Distribution(distrax.Distribution):
  """A TRIP as a `distrax.Distribution` with event shape (n,).

  `log_prob` marginalizes NaN entries; `sample(seed=key, sample_shape=...)` draws exact
  samples.
  """

  def __init__(self, params: TRIPParams):
    super().__init__()
    self._params = params

  @property
  def params(self) -> TRIPParams:
    return self._params

  @property
  def event_shape(self) -> tuple:
    return (self._params.num_variables,)

  @property
  def dtype(self) -> Any:
    return self._params.core_roots.dtype

  def _sample_n(self, key: Array, n: int) -> Array:
    return sample(self._params, key, (n,))

  def log_prob(self, value: Array) -> Array:
    return log_prob(self._params, value)

  def posterior_weights(self, value: Array) -> Array:
    return posterior_weights(self._params, value)
