"""Latent priors behind one interface: N(0, I), factorized GMM, TRIP, any distrax one.

`LatentPrior` is the interface trainers program against: pure functions over the
prior's own params pytree (`init`, `log_prob`, `sample`, and the data-driven `refit` or
None), so a trainer switches priors by config. Three faces of prior satisfy it:

* `make_prior(kind, d)`: a `Prior` for N(0, I), the factorized GMM (exactly a TRIP
  of rank 1: the ring's trace then factorizes into a product of 1-D mixtures), the
  TRIP, or the paper's full-space baselines (`full_gmm`, one diagonal mixture over the
  whole space, and `full_gaussian`, a learned N(mean, L L^T); `full_space_priors`).
  The TRIP's `init` is the paper's GAN initialization (section 3.3: means uniform in
  [-1, 1], standard deviations 1/N); the VAE re-fits means and scales to the data
  (`refit`). These priors also condition: `log_prob` marginalizes missing entries and
  `sample` takes `given`/`observed`, which `mode_hopping` (the latent trajectories of
  Figure 5) needs.
* `with_flows(prior, K)`: the prior under a RealNVP of K coupling layers
  (`flows.FlowPrior`), a `LatentPrior` that refuses conditioning (not exact under a
  flow); `mode_hopping` hops in its base space.
* `make_joint_prior` builds the conditional model's `JointPrior` (paper, section 4,
  eq. 11): one TRIP over the latents z and discrete attributes y, in a seeded random
  order of the variables, with missing attributes summed out exactly. As a
  `LatentPrior` it is p(z), every attribute summed out; `JointPrior.sample_joint` draws
  (z, y) given any subset of the attributes.
* `DistraxPrior` makes any `distrax.Distribution` built from params a `LatentPrior`
  (e.g. a full-space GMM or a RealNVP flow). distrax is imported only by the code that
  builds such distributions, never by this module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import (
  TYPE_CHECKING,
  Any,
  Callable,
  NamedTuple,
  Optional,
  Protocol,
  Sequence,
  Union,
  runtime_checkable,
)

import jax
import jax.numpy as jnp
import numpy as np

from tripjax import prior as trip
from tripjax.prior import checks
from tripjax.prior.params import component_mask

if TYPE_CHECKING:
  import distrax

Array = jax.Array
Shape = Union[int, Sequence[int]]
PRIOR_KINDS = ("normal", "gmm", "trip")  # every trainer's
# The paper's full-space baselines (`tripjax.full_space_priors`); the VAE's.
FULL_SPACE_PRIOR_KINDS = ("full_gmm", "full_gaussian")
JOINT_CORE_INITS = ("diagonal", "uniform")


@runtime_checkable
class LatentPrior(Protocol):
  """A prior p(z) over d real latent variables: the interface trainers program against.

  Everything is a pure function of an explicit params pytree (trained by the trainer's
  optimizer, checkpointed with the model's params), so every method can be jitted,
  differentiated and vmapped. `make_prior`'s `Prior`, `JointPrior` and `DistraxPrior`
  satisfy it; `isinstance(prior, LatentPrior)` checks that the members exist (not
  their signatures).

  Conditioning (`sample(..., given=, observed=)`, NaN or `observed=` entries summed
  out of `log_prob`) is not part of the interface: `make_prior`'s priors have it (and
  `mode_hopping` needs it), and `JointPrior.sample_joint` conditions on attributes.

  Attributes:
    kind: the prior's name, e.g. "normal", "gmm", "trip", "joint_trip".
    num_variables: d, the latent size.
    refit: (params, z (N, d), key) -> params, the data-driven (EM) re-initialization
      of the prior's means and scales from latents z (e.g. the encoder's); None where
      the prior has none (the VAE refits only a prior whose refit is not None).
  """

  @property
  def kind(self) -> str:
    ...

  @property
  def num_variables(self) -> int:
    ...

  @property
  def refit(self) -> Optional[Callable[[Any, Array, Array], Any]]:
    ...

  def init(self, key: Array) -> Any:
    """key -> a fresh params pytree."""
    ...

  def log_prob(self, params: Any, z: Array) -> Array:
    """log p(z) (...) of latents z (..., d)."""
    ...

  def sample(self, params: Any, key: Array, shape: Shape = ()) -> Array:
    """(*shape, d) exact draws z ~ p(z)."""
    ...


class Prior(NamedTuple):
  """A `LatentPrior` over `num_variables` real variables that also conditions.

  Built by `make_prior`. Beyond `LatentPrior`, `log_prob` marginalizes missing entries
  and `sample` draws the missing entries of `given` from their exact conditional.

  Attributes:
    kind: "normal", "gmm", "trip", "full_gmm" or "full_gaussian".
    num_variables: d, the latent size.
    init: key -> params pytree.
    log_prob: (params, z (..., d), observed=None) -> (...); NaN entries marginalized.
    sample: (params, key, shape=(), given=None, observed=None) -> (*shape, d), or
      (*shape, *given.shape[:-1], d) with `given` (its present entries kept).
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


def normal_log_prob(num_variables: int, z: Array,
                    observed: Optional[Array] = None) -> Array:
  """log N(z_obs; 0, I) of the observed entries of z (..., d); missing entries drop out."""
  z, present = checks.values_and_mask(z, observed, num_variables, "z")
  z_safe = jnp.where(present, z, 0.0)
  terms = -0.5 * jnp.square(z_safe) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(jnp.where(present, terms, 0.0), axis=-1)


def normal_sample(num_variables: int, key: Array, shape: Sequence[int] = (),
                  given: Optional[Array] = None, observed: Optional[Array] = None,
                  dtype=jnp.float32) -> Array:
  """Draws from N(0, I); with `given`, its present entries are kept (independence)."""
  shape = (shape,) if isinstance(shape, int) else tuple(shape)
  checks.observed_needs_given(given, observed)
  if given is None:
    return jax.random.normal(key, (*shape, num_variables), dtype)
  given, present = checks.values_and_mask(given, observed, num_variables, "given")
  noise = jax.random.normal(key, (*shape, *given.shape), given.dtype)
  return jnp.where(present, given, noise)


# ---------------------------------------------------------------------------------------


def make_prior(kind: str, num_variables: int, *, num_components: int = 10,
               rank: int = 20, num_mixture_components: Optional[int] = None,
               dtype=jnp.float32) -> Prior:
  """Builds a prior by name.

  Args:
    kind: "normal" (N(0, I)), "gmm" (factorized GMM = TRIP of rank 1), "trip",
      "full_gmm" (one diagonal mixture over the whole space) or "full_gaussian"
      (N(mean, L L^T), learnable, starting at N(0, I)); see `full_space_priors`.
    num_variables: latent size d.
    num_components: components per latent variable N (gmm, trip).
    rank: TRIP core size m (trip only; gmm is rank 1).
    num_mixture_components: full_gmm's number of components; None: d * N.
    dtype: parameter dtype.

  Returns:
    A `Prior`. The full-space kinds' refits (EM, the sample mean and covariance) are
    there but the trainers use them only when asked (`prior.refit_kinds`).
  """
  all_kinds = PRIOR_KINDS + FULL_SPACE_PRIOR_KINDS
  if kind not in all_kinds:
    raise ValueError(f"unknown prior kind {kind!r}; expected one of {all_kinds}.")
  num_variables = checks.positive_int(num_variables, "num_variables")
  if kind in FULL_SPACE_PRIOR_KINDS:
    return _full_space_prior(kind, num_variables, num_components,
                             num_mixture_components, dtype)
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


def _full_space_prior(kind: str, num_variables: int, num_components: int,
                      num_mixture_components: Optional[int], dtype) -> Prior:
  from tripjax import full_space_priors as full  # imports distrax
  if kind == "full_gaussian":
    return Prior(kind=kind, num_variables=num_variables,
                 init=lambda key: full.full_gaussian_init(num_variables, dtype),
                 log_prob=full.full_gaussian_log_prob, sample=full.full_gaussian_sample,
                 refit=full.full_gaussian_refit)
  if num_mixture_components is None:
    num_mixture_components = num_variables * checks.positive_int(num_components,
                                                                 "num_components")
  size = checks.positive_int(num_mixture_components, "num_mixture_components")
  return Prior(kind=kind, num_variables=num_variables,
               init=lambda key: full.full_gmm_init(key, num_variables, size, dtype),
               log_prob=full.full_gmm_log_prob, sample=full.full_gmm_sample,
               refit=full.full_gmm_refit)


def with_flows(prior: LatentPrior, num_layers: int) -> LatentPrior:
  """`prior` under a RealNVP of `num_layers` coupling layers (`flows.FlowPrior`);
  `prior` itself for 0."""
  if num_layers == 0:
    return prior
  from tripjax import flows  # imports distrax
  return flows.FlowPrior(prior, num_layers)


def base_prior(prior: LatentPrior) -> LatentPrior:
  """The prior under a flow (`FlowPrior.base`), or `prior` itself."""
  return getattr(prior, "base", prior)


def redraw_cores(params: trip.TRIPParams, key: Array) -> trip.TRIPParams:
  """The ring with its cores' roots (their parameters before the positivity map)
  redrawn as N(0, 1) / (m^2 N), N the most components of a variable; means and
  scales kept. The authors' refit does this; padded components stay zero."""
  roots = params.core_roots
  noise = jax.random.normal(key, roots.shape, roots.dtype) / (
      params.rank ** 2 * params.max_components)
  mask = jnp.asarray(component_mask(params), roots.dtype)
  return dataclasses.replace(params, core_roots=noise * mask[:, :, None, None])


# ---------------------------------------------------------------------------------------
# Any distrax distribution as a prior.


@dataclasses.dataclass(frozen=True)
class DistraxPrior:
  """A `LatentPrior` from a distrax distribution built from params.

  `make_distribution(params)` builds the `distrax.Distribution` (event shape (d,),
  batch shape ()) each call evaluates; it runs inside the caller's trace, so it is free
  under jit. distrax is imported by `make_distribution`'s own code, not by this class.
  Frozen and hashable (by its functions' identity), so it can be a static jit
  argument. A standard normal, a full-space GMM and a flow:

    DistraxPrior("normal", d, init=lambda key: {},
                 make_distribution=lambda params: distrax.MultivariateNormalDiag(
                     jnp.zeros(d), jnp.ones(d)))
    DistraxPrior("full_gmm", d, init=gmm_init,
                 make_distribution=lambda params: distrax.MixtureSameFamily(
                     distrax.Categorical(logits=params["logits"]),
                     distrax.MultivariateNormalDiag(params["means"],
                                                    jnp.exp(params["log_scales"]))))
    DistraxPrior("realnvp", d, init=flow_init,
                 make_distribution=lambda params: distrax.Transformed(
                     base, make_bijector(params)))

  Attributes:
    kind: the prior's name.
    num_variables: d, the latent size.
    init: key -> params pytree (e.g. a flax module's `init`).
    make_distribution: params -> `distrax.Distribution` over (d,) latents.
    refit: optional (params, z (N, d), key) -> params, the data-driven
      re-initialization; None (the default) for none.
  """
  kind: str
  num_variables: int
  init: Callable[[Array], Any]
  make_distribution: Callable[[Any], "distrax.Distribution"]
  refit: Optional[Callable[[Any, Array, Array], Any]] = None

  def __post_init__(self):
    if not isinstance(self.kind, str) or not self.kind:
      raise ValueError(f"kind must be a nonempty string, got {self.kind!r}.")
    object.__setattr__(self, "num_variables",
                       checks.positive_int(self.num_variables, "num_variables"))
    for name in ("init", "make_distribution"):
      if not callable(getattr(self, name)):
        raise TypeError(f"{name} must be callable, got {getattr(self, name)!r}.")
    if self.refit is not None and not callable(self.refit):
      raise TypeError(f"refit must be callable or None, got {self.refit!r}.")

  def distribution(self, params: Any) -> "distrax.Distribution":
    """The distrax distribution at `params`, its shapes checked against d.

    Raises:
      ValueError: its event shape is not (d,) or its batch shape is not ().
    """
    distribution = self.make_distribution(params)
    event_shape = tuple(distribution.event_shape)
    batch_shape = tuple(distribution.batch_shape)
    if event_shape != (self.num_variables,) or batch_shape:
      hint = (" (a distribution of independent scalars has event shape (); wrap it in "
              "distrax.Independent(distribution, 1))"
              if event_shape == () and batch_shape == (self.num_variables,) else "")
      raise ValueError(
          f"the {self.kind!r} prior's distribution must have event shape "
          f"({self.num_variables},) and batch shape (), got event shape {event_shape} "
          f"and batch shape {batch_shape}{hint}.")
    return distribution

  def log_prob(self, params: Any, z: Array) -> Array:
    """log p(z) (...) of latents z (..., d)."""
    z = checks.float_array(z, self.num_variables, "z")
    return self.distribution(params).log_prob(z)

  def sample(self, params: Any, key: Array, shape: Shape = ()) -> Array:
    """(*shape, d) draws z ~ p(z)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return self.distribution(params).sample(seed=key, sample_shape=shape)


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

  Under a flow (`flows.FlowPrior`) the hops are those of its base prior, in the base
  space, and every latent of the trajectory is pushed through the flow.

  Args:
    prior: a `Prior` of `make_prior`: hopping needs its conditional
      `sample(..., given=, observed=)`, which a `LatentPrior` need not have; or a
      `FlowPrior` over one.
    params: its parameters.
    key: PRNG key.
    num_trajectories: T.
    num_hops: H, hops after the initial sample.
    num_resampled: dimensions re-drawn per hop, 1 <= num_resampled <= d.

  Returns:
    (T, H + 1, d) latents; [:, 0] is the initial prior sample.

  Raises:
    TypeError: `prior` is not a `Prior` (e.g. a `JointPrior` or `DistraxPrior`).
    ValueError: a count out of range.
  """
  base = base_prior(prior)
  if base is not prior and isinstance(base, Prior):
    path = mode_hopping(base, params["base"], key, num_trajectories, num_hops,
                        num_resampled)
    return prior.forward(params, path)  # type: ignore[attr-defined]
  if not isinstance(prior, Prior):
    raise TypeError("mode_hopping needs a prior that samples given some coordinates (a "
                    f"make_prior Prior, or a flow on one), got a {type(prior).__name__}.")
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


# ---------------------------------------------------------------------------------------
# The joint prior p(z, y) of the conditional VAE-TRIP (paper, section 4).


class JointLogProb(NamedTuple):
  """log p(z) and log p(y_obs | z) = log p(z, y_obs) - log p(z), each (...)."""
  latent: Array
  attribute: Array


class JointSample(NamedTuple):
  """Draws of the joint prior: latents (..., d) and attributes (..., a) as floats."""
  latents: Array
  attributes: Array


@dataclasses.dataclass(frozen=True)
class JointPrior:
  """A TRIP over d continuous latents z and a discrete attributes y (paper, eq. 11).

  As a `LatentPrior` it is p(z) over the d latents, every attribute summed out
  (`log_prob(params, z)`, `sample(params, key, shape)`); `log_prob` with attributes,
  `log_prob_parts` and `sample_joint` reach the attributes.

  The ring holds the d + a variables of [z, y] in the order `permutation`: ring position
  i holds variable permutation[i] (z_j is variable j, attribute k is variable d + k).
  The params are the ring's `TRIPParams` in ring order, a pytree of float arrays only;
  the permutation is static (a compile-time gather), so it never meets an optimizer.
  A trainer stores `permutation` in its checkpoint next to (not inside) the params and
  rebuilds the prior with `make_joint_prior(..., permutation=stored)` on restore.

  Attributes are float arrays (..., a) holding value indices 0..num_values-1, NaN where
  an attribute is missing: missing attributes are summed out exactly (Algorithm 1).
  An attribute value out of range or not an integer has probability zero (-inf).

  Attributes:
    num_latents: d.
    num_values: (a,) number of values of each attribute.
    permutation: (d + a,) the ring order of the variables of [z, y].
    num_components: Gaussian components per latent variable.
    rank: the ring's core size m.
    core_init: "diagonal" (`near_diagonal_cores`) or "uniform" (`trip.init`'s).
    off_diagonal: the off-diagonal core entries of the "diagonal" init.
    dtype: parameter dtype.
  """
  num_latents: int
  num_values: tuple[int, ...]
  permutation: tuple[int, ...]
  num_components: int = 10
  rank: int = 20
  core_init: str = "diagonal"
  off_diagonal: float = 0.01
  dtype: Any = jnp.float32

  @property
  def kind(self) -> str:
    """The prior's name, "joint_trip"."""
    return "joint_trip"

  @property
  def num_variables(self) -> int:
    """d, the latent size of p(z) (the ring holds d + a variables: `variables`)."""
    return self.num_latents

  @property
  def num_attributes(self) -> int:
    """a."""
    return len(self.num_values)

  @property
  def variables(self) -> tuple:
    """The ring's `trip.Continuous` / `trip.Discrete` variables in ring order."""
    natural_order = ([trip.Continuous(self.num_components)] * self.num_latents
                     + [trip.Discrete(k) for k in self.num_values])
    return tuple(natural_order[i] for i in self.permutation)

  def init(self, key: Array) -> trip.TRIPParams:
    """Random ring parameters in ring order: `trip.init`'s, with `near_diagonal_cores`
    for core_init="diagonal"."""
    params = trip.init(key, self.variables, rank=self.rank, dtype=self.dtype)
    if self.core_init == "uniform":
      return params
    return near_diagonal_cores(params, jax.random.fold_in(key, 1), self.off_diagonal)

  def ring_values(self, z: Array, attributes: Optional[Array] = None) -> Array:
    """[z, y] in ring order: z (..., d), attributes (..., a) or None -> (..., d + a).

    Attributes broadcast against z's batch shape; None means all missing.
    """
    z = checks.float_array(z, self.num_latents, "z")
    batch_shape = z.shape[:-1]
    if attributes is None:
      attributes = jnp.full(batch_shape + (self.num_attributes,), jnp.nan, z.dtype)
    attributes = checks.float_array(attributes, self.num_attributes, "attributes")
    try:
      attributes = jnp.broadcast_to(attributes, batch_shape + (self.num_attributes,))
    except ValueError:
      raise ValueError(f"attributes of shape {attributes.shape} do not broadcast to "
                       f"z's batch shape {batch_shape}.") from None
    values = jnp.concatenate([z, attributes.astype(z.dtype)], axis=-1)
    return values[..., np.asarray(self.permutation)]

  def split_ring_values(self, values: Array) -> JointSample:
    """Inverse of `ring_values`: (..., d + a) in ring order -> (z, attributes)."""
    natural_order = values[..., np.argsort(self.permutation)]
    return JointSample(natural_order[..., :self.num_latents],
                       natural_order[..., self.num_latents:])

  def log_prob(self, params: trip.TRIPParams, z: Array,
               attributes: Optional[Array] = None) -> Array:
    """log p(z, y_obs) (...) for z (..., d) and attributes (..., a), NaN = missing.

    Without attributes (or all NaN) it is log p(z); NaN entries of z are summed out too.
    """
    return trip.log_prob(params, self.ring_values(z, attributes))

  def latent_log_prob(self, params: trip.TRIPParams, z: Array) -> Array:
    """log p(z) (...), every attribute summed out: `log_prob(params, z)`."""
    return self.log_prob(params, z)

  def log_prob_parts(self, params: trip.TRIPParams, z: Array,
                     attributes: Array) -> JointLogProb:
    """log p(z) and log p(y_obs | z) (eq. 14's two prior terms) in one ring contraction.

    log p(y_obs | z) = log p(z, y_obs) - log p(z); both are evaluated in one batch of
    twice the size, so an example whose attributes are all missing gets exactly 0.
    """
    with_attributes = self.ring_values(z, attributes)
    without = self.ring_values(z)
    both = trip.log_prob(params, jnp.stack([without, with_attributes]))
    return JointLogProb(latent=both[0], attribute=both[1] - both[0])

  def sample(self, params: trip.TRIPParams, key: Array, shape: Shape = ()) -> Array:
    """(*shape, d) exact draws z ~ p(z), attributes summed out.

    The latents of `sample_joint(params, key, shape)`: the same draws for the same key.
    """
    return self.sample_joint(params, key, shape).latents

  def sample_joint(self, params: trip.TRIPParams, key: Array, shape: Shape = (),
                   given_attributes: Optional[Array] = None) -> JointSample:
    """Exact draws from p(z, y), or from p(z, y_missing | y_given).

    Args:
      params: the ring's params.
      key: PRNG key.
      shape: sample shape.
      given_attributes: optional (..., a) attributes to condition on, NaN for the
        unspecified ones (those are summed out of the condition and drawn too).

    Returns:
      JointSample with latents (*shape, ..., d) and attributes (*shape, ..., a): given
      attributes unchanged, the others drawn from the conditional. Rows whose given
      attributes have probability zero are NaN in every drawn entry.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    given = None
    if given_attributes is not None:
      given_attributes = checks.float_array(given_attributes, self.num_attributes,
                                            "given_attributes")
      no_latents = jnp.full(given_attributes.shape[:-1] + (self.num_latents,), jnp.nan,
                            given_attributes.dtype)
      given = self.ring_values(no_latents, given_attributes)
    return self.split_ring_values(trip.sample(params, key, shape, given=given))

  def refit(self, params: trip.TRIPParams, z: Array,
            key: Optional[Array] = None) -> trip.TRIPParams:
    """Data-driven re-initialization of the latents' means and scales from z (N, d)."""
    return trip.refit_components(params, self.ring_values(z), key=key)


def near_diagonal_cores(params: trip.TRIPParams, key: Array,
                        off_diagonal: float = 0.01) -> trip.TRIPParams:
  """The params with cores Q_j[k] = diag(u_jk) + off_diagonal, u_jk ~ U(0.5, 1.5)^m.

  With off_diagonal = 0 the ring is a mixture of m fully factorized distributions,
  Tr(∏_j Q_j[s_j]) = Σ_a ∏_j u_{j s_j a}: every variable sees the same bond state a, so
  an attribute is coupled to every latent however far apart they sit on the ring. The
  near-uniform cores of `trip.init` are close to rank one instead (all-ones matrices),
  under which the variables are nearly independent and log p(y_obs | z) of eq. 14 has
  almost no gradient: on the digits, its training stayed at chance for epochs. The
  small off-diagonal part keeps the gradient of the off-diagonal entries nonzero.
  Means and scales are kept.
  """
  cores, means, scales = trip.natural(params)
  num_variables, max_components, rank, _ = cores.shape
  diagonal = jax.random.uniform(key, (num_variables, max_components, rank), cores.dtype,
                                0.5, 1.5)
  new_cores = jnp.eye(rank, dtype=cores.dtype) * diagonal[..., None] + off_diagonal
  new_cores = jnp.where(cores > 0, new_cores, 0.0)        # keeps padded components zero
  return trip.from_natural(params.variables, new_cores, means, scales)


def random_permutation(num_variables: int, seed: int) -> tuple[int, ...]:
  """The seeded random order of `num_variables` variables (numpy PCG64)."""
  _check_count(num_variables, "num_variables", 1)
  _check_count(seed, "seed", 0)
  return tuple(int(i) for i in np.random.default_rng(seed).permutation(num_variables))


def make_joint_prior(num_latents: int, num_values: Sequence[int], *,
                     num_components: int = 10, rank: int = 20, permutation_seed: int = 0,
                     permutation: Optional[Sequence[int]] = None,
                     core_init: str = "diagonal", off_diagonal: float = 0.01,
                     dtype=jnp.float32) -> JointPrior:
  """The joint TRIP p(z, y) over d latents and discrete attributes (paper, eq. 11).

  Args:
    num_latents: d.
    num_values: values of each attribute, e.g. [10, 2, 2]; may be empty.
    num_components: Gaussian components per latent variable.
    rank: the ring's core size m.
    permutation_seed: seed of the random order of the variables ("randomly permuting
      latent codes and conditions gives good results", section 4).
    permutation: an explicit order of the d + a variables (e.g. restored from a
      checkpoint); overrides `permutation_seed`.
    core_init: "diagonal" (`near_diagonal_cores`, a mixture of rank-many factorized
      distributions at init) or "uniform" (`trip.init`'s near-uniform cores).
    off_diagonal: the off-diagonal core entries of the "diagonal" init, > 0.
    dtype: parameter dtype.

  Returns:
    A `JointPrior`.
  """
  num_latents = _check_count(num_latents, "num_latents", 1)
  num_values = tuple(num_values)
  for k, values in enumerate(num_values):
    _check_count(values, f"num_values[{k}]", 1)
  num_values = tuple(int(values) for values in num_values)
  _check_count(num_components, "num_components", 1)
  _check_count(rank, "rank", 1)
  if core_init not in JOINT_CORE_INITS:
    raise ValueError(f"unknown core_init {core_init!r}; expected one of "
                     f"{JOINT_CORE_INITS}.")
  if not isinstance(off_diagonal, (int, float)) or not off_diagonal > 0:
    raise ValueError(f"off_diagonal must be a number > 0, got {off_diagonal!r}.")
  num_variables = num_latents + len(num_values)
  if permutation is None:
    permutation = random_permutation(num_variables, permutation_seed)
  else:
    permutation = tuple(int(i) for i in np.asarray(permutation).reshape(-1))
    if sorted(permutation) != list(range(num_variables)):
      raise ValueError(f"permutation must be an order of range({num_variables}) "
                       f"({num_latents} latents + {len(num_values)} attributes), got "
                       f"{list(permutation)}.")
  return JointPrior(num_latents=num_latents, num_values=num_values,
                    permutation=permutation, num_components=int(num_components),
                    rank=int(rank), core_init=core_init,
                    off_diagonal=float(off_diagonal), dtype=dtype)
