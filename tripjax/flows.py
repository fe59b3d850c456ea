"""RealNVP flows on top of any latent prior (the authors' `--add_flows`).

z = f(z0), z0 ~ p_base: f is a chain of K affine coupling layers (Dinh et al., RealNVP)
with alternating masks over the coordinates' parity. Layer i keeps the coordinates
where its mask is True and maps the others as

  y = x * exp(s(x_kept)) + t(x_kept),

with s and t MLPs d -> 64 -> 64 -> d (LeakyReLU, and tanh on s's output), as the authors'
code. The layers are distrax bijectors (`MaskedCoupling` of a `ScalarAffine`, in a
`Chain`), so f, f^-1 and log|det J| are the library's, and

  log p(z) = log p_base(f^-1(z)) + log|det J_{f^-1}(z)|.

`FlowPrior` makes this a `tripjax.priors.LatentPrior` over any base prior: its params
are {"base": the base prior's, "flow": the coupling nets'}; draws push base draws
through f; the refit fits the base prior to f^-1(z). Conditioning (NaN entries, `given`)
is not exact under a flow, so `FlowPrior` refuses it with an error that names the
prior; `tripjax.priors.mode_hopping` hops in the base space and pushes the trajectory
through f.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks

Array = jax.Array
HIDDEN_SIZE = 64
LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default


def _dense_init(key: Array, fan_in: int, fan_out: int, dtype) -> dict:
  """torch.nn.Linear's default init: weights and biases U(-1/sqrt(fan_in), ...)."""
  bound = 1.0 / np.sqrt(fan_in)
  kernel_key, bias_key = jax.random.split(key)
  return {"kernel": jax.random.uniform(kernel_key, (fan_in, fan_out), dtype, -bound, bound),
          "bias": jax.random.uniform(bias_key, (fan_out,), dtype, -bound, bound)}


def _mlp_init(key: Array, num_variables: int, hidden_size: int, dtype) -> list:
  sizes = (num_variables, hidden_size, hidden_size, num_variables)
  keys = jax.random.split(key, 3)
  return [_dense_init(keys[i], sizes[i], sizes[i + 1], dtype) for i in range(3)]


def _mlp(layers: list, x: Array) -> Array:
  """d -> hidden -> hidden -> d with LeakyReLU between the layers: (..., d) -> (..., d)."""
  for layer in layers[:-1]:
    x = jax.nn.leaky_relu(x @ layer["kernel"] + layer["bias"], LEAKY_RELU_SLOPE)
  return x @ layers[-1]["kernel"] + layers[-1]["bias"]


def realnvp_init(key: Array, num_variables: int, num_layers: int,
                 hidden_size: int = HIDDEN_SIZE, dtype=jnp.float32) -> list:
  """The s- and t-nets of `num_layers` coupling layers: [{"s": mlp, "t": mlp}, ...]."""
  keys = jax.random.split(key, 2 * num_layers)
  return [{"s": _mlp_init(keys[2 * i], num_variables, hidden_size, dtype),
           "t": _mlp_init(keys[2 * i + 1], num_variables, hidden_size, dtype)}
          for i in range(num_layers)]


def coupling_masks(num_variables: int, num_layers: int) -> np.ndarray:
  """(K, d) bool: layer i keeps the coordinates j with j % 2 == i % 2."""
  parity = np.arange(num_variables) % 2
  return np.stack([parity == i % 2 for i in range(num_layers)])


def realnvp_bijector(flow_params: list, num_variables: int) -> distrax.Chain:
  """f: the chain of coupling layers, layer 0 applied first in the forward direction."""
  masks = coupling_masks(num_variables, len(flow_params))
  layers = []
  for mask, nets in zip(masks, flow_params):

    def conditioner(kept: Array, nets=nets) -> tuple[Array, Array]:
      return jnp.tanh(_mlp(nets["s"], kept)), _mlp(nets["t"], kept)

    layers.append(distrax.MaskedCoupling(
        mask=jnp.asarray(mask), conditioner=conditioner,
        bijector=lambda params: distrax.ScalarAffine(shift=params[1],
                                                     log_scale=params[0])))
  return distrax.Chain(layers[::-1])  # a Chain applies its last bijector first


def _has_concrete_nan(z: Array) -> bool:
  return not isinstance(z, jax.core.Tracer) and bool(np.isnan(np.asarray(z)).any())


@dataclasses.dataclass(frozen=True)
class FlowPrior:
  """A `LatentPrior`: z = f(z0), z0 ~ base, f a RealNVP of `num_layers` coupling layers.

  Frozen and hashable (a static jit argument, like the base `Prior`).

  Attributes:
    base: the base prior (any `LatentPrior`: normal, gmm, trip, full_gmm, ...).
    num_layers: K >= 1 coupling layers.
    hidden_size: width of the s- and t-nets' hidden layers.
  """
  base: Any
  num_layers: int
  hidden_size: int = HIDDEN_SIZE

  def __post_init__(self):
    object.__setattr__(self, "num_layers",
                       checks.positive_int(self.num_layers, "num_layers"))
    object.__setattr__(self, "hidden_size",
                       checks.positive_int(self.hidden_size, "hidden_size"))

  @property
  def kind(self) -> str:
    """The base's kind and the flow, e.g. "trip+realnvp4"."""
    return f"{self.base.kind}+realnvp{self.num_layers}"

  @property
  def num_variables(self) -> int:
    return int(self.base.num_variables)

  def init(self, key: Array) -> dict:
    """{"base": the base prior's init, "flow": `realnvp_init`'s nets}."""
    base_key, flow_key = jax.random.split(key)
    return {"base": self.base.init(base_key),
            "flow": realnvp_init(flow_key, self.num_variables, self.num_layers,
                                 self.hidden_size)}

  def bijector(self, params: dict) -> distrax.Chain:
    """f at `params` (the distrax chain)."""
    return realnvp_bijector(params["flow"], self.num_variables)

  def forward(self, params: dict, base_z: Array) -> Array:
    """z = f(z0): (..., d) -> (..., d)."""
    return self.bijector(params).forward(base_z)

  def inverse(self, params: dict, z: Array) -> Array:
    """z0 = f^-1(z): (..., d) -> (..., d)."""
    return self.bijector(params).inverse(z)

  def _no_conditioning(self, what: str) -> ValueError:
    return ValueError(f"the {self.kind} prior has no exact {what} (a flow mixes the "
                      f"coordinates); condition on a prior without flows.")

  def log_prob(self, params: dict, z: Array, observed: Optional[Array] = None) -> Array:
    """log p(z) = log p_base(f^-1(z)) + log|det J_{f^-1}(z)| (...) of z (..., d).

    Raises:
      ValueError: `observed` is passed, or z (not traced) has NaN entries: a flow has
        no exact marginals. A traced z with a NaN entry gives NaN in its row.
    """
    if observed is not None or _has_concrete_nan(z):
      raise self._no_conditioning("marginals (missing entries or observed=)")
    z = checks.float_array(z, self.num_variables, "z")
    base_z, log_det = self.bijector(params).inverse_and_log_det(z)
    log_prob = self.base.log_prob(params["base"], base_z) + log_det
    return jnp.where(jnp.any(jnp.isnan(z), axis=-1), jnp.nan, log_prob)

  def sample(self, params: dict, key: Array, shape=(), given: Optional[Array] = None,
             observed: Optional[Array] = None) -> Array:
    """(*shape, d) draws f(z0), z0 ~ base.

    Raises:
      ValueError: `given` or `observed` is passed (no exact conditionals).
    """
    if given is not None or observed is not None:
      raise self._no_conditioning("conditionals (given=)")
    return self.forward(params, self.base.sample(params["base"], key, shape))

  @property
  def refit(self) -> Optional[Callable[[Any, Array, Array], Any]]:
    """The base's refit on f^-1(z), the flow kept; None where the base has none."""
    if self.base.refit is None:
      return None

    def refit(params: dict, z: Array, key: Array) -> dict:
      return dict(params, base=self.base.refit(params["base"], self.inverse(params, z),
                                               key))

    return refit
