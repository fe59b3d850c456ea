"""Tests for the joint prior p(z, y) of the conditional VAE-TRIP (tripjax.priors)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import prior_reference as ref
import tripjax.prior as trip
from tripjax import priors

NUM_LATENTS, LATENT_COMPONENTS, NUM_VALUES, RANK = 2, 2, (3, 2), 2


@pytest.fixture(scope="module")
def tiny():
  joint = priors.make_joint_prior(NUM_LATENTS, NUM_VALUES,
                                  num_components=LATENT_COMPONENTS, rank=RANK,
                                  permutation_seed=0)
  ring = ref.joint_ring(joint, seed=5)
  return joint, ring, ref.to_params(ring)


@pytest.fixture(scope="module")
def tiny_sample(tiny):
  """The tiny prior's `sample_joint`, compiled once for the module."""
  return jax.jit(tiny[0].sample_joint, static_argnums=2)


def test_permutation_is_fixed_by_the_seed_and_restorable():
  def order(seed):
    return priors.make_joint_prior(5, [3, 2], permutation_seed=seed).permutation

  assert order(0) == order(0)
  assert sorted(order(0)) == list(range(7))
  assert len({order(seed) for seed in range(4)}) > 1
  joint = priors.make_joint_prior(5, [3, 2], permutation_seed=1, rank=3)
  restored = priors.make_joint_prior(5, [3, 2], permutation_seed=9, rank=3,
                                     permutation=np.asarray(joint.permutation))
  assert restored == joint
  kinds = [type(v) for v in joint.variables]
  for position, variable in enumerate(joint.permutation):
    assert kinds[position] == (trip.Continuous if variable < 5 else trip.Discrete)
  # Params are float leaves only: nothing in them for an optimizer to break on.
  params = jax.jit(joint.init)(jax.random.key(0, impl="rbg"))
  assert all(jnp.issubdtype(leaf.dtype, jnp.floating)
             for leaf in jax.tree.leaves(params))


def test_the_ring_is_invariant_to_rotating_order_and_cores_together():
  """Tr is cyclic: rotating the permutation and the cores alike keeps p(z, y); a swap
  of two variables (with their cores) changes the ring and p."""
  joint = priors.make_joint_prior(4, [3, 2], num_components=3, rank=3,
                                  permutation_seed=5, core_init="uniform")
  params = joint.init(jax.random.key(1, impl="rbg"))  # (diagonal cores hide the order)
  z = jnp.asarray(np.random.default_rng(2).normal(size=(6, 4)), jnp.float32)
  attributes = jnp.array([[0.0, 1.0], [2.0, np.nan], [np.nan, 0.0]] * 2)
  shift = 2

  def reorder(index):
    """The prior with ring order permutation[index] and its params moved alike."""
    moved = jax.tree.map(lambda leaf: leaf[np.asarray(index)], params).replace(
        num_components=tuple(params.num_components[i] for i in index),
        discrete=tuple(params.discrete[i] for i in index))
    order = [joint.permutation[i] for i in index]
    return priors.make_joint_prior(4, [3, 2], num_components=3, rank=3,
                                   permutation=order), moved

  n = len(joint.permutation)
  rotated, rotated_params = reorder([(i + shift) % n for i in range(n)])
  swap = list(range(n))
  swap[0], swap[2] = 2, 0
  swapped, swapped_params = reorder(swap)

  @jax.jit
  def evaluate(z, attributes):  # one compilation for the three rings
    return (joint.log_prob(params, z, attributes),
            rotated.log_prob(rotated_params, z, attributes),
            swapped.log_prob(swapped_params, z, attributes))

  expected, rotated_log_prob, swapped_log_prob = evaluate(z, attributes)
  np.testing.assert_allclose(rotated_log_prob, expected, rtol=1e-5)
  assert not np.allclose(swapped_log_prob, expected, rtol=1e-3)


def test_log_prob_parts_match_brute_force(tiny, x64):
  joint, ring, _ = tiny
  params = ref.to_params(ring, jnp.float64)
  z = np.random.default_rng(1).normal(size=(4, NUM_LATENTS))
  attributes = np.array([[0, 1], [2, np.nan], [np.nan, 0], [np.nan, np.nan]])

  def brute_force(attributes):  # [z, y] in ring order: position i holds permutation[i]
    values = np.concatenate([z, np.broadcast_to(attributes, (4, 2))], 1)
    return ref.log_prob(ring, values[:, list(joint.permutation)])

  @jax.jit
  def evaluate(z, attributes):  # one compilation for the three calls
    return (joint.log_prob(params, z, attributes),
            joint.log_prob_parts(params, z, attributes),
            joint.log_prob(params, z, attributes[1]))

  log_prob, parts, broadcast = evaluate(jnp.asarray(z), jnp.asarray(attributes))
  no_attributes = np.full(2, np.nan)
  np.testing.assert_allclose(log_prob, brute_force(attributes), rtol=1e-10)
  np.testing.assert_allclose(parts.latent, brute_force(no_attributes), rtol=1e-10)
  np.testing.assert_allclose(parts.attribute,
                             brute_force(attributes) - brute_force(no_attributes),
                             rtol=1e-9, atol=1e-12)
  assert parts.attribute[3] == 0.0  # nothing observed: exactly zero
  # A single attribute vector broadcasts against the batch of z.
  np.testing.assert_allclose(broadcast, brute_force(attributes[1]), rtol=1e-10)


@pytest.mark.parametrize("given", [[np.nan, np.nan], [2, np.nan], [np.nan, 1], [0, 1]])
def test_conditional_samples_follow_brute_force_conditionals(tiny, tiny_sample, given):
  """Frequencies of drawn attribute values and means of z given a subset of attributes."""
  joint, ring, params = tiny
  num_draws = 40_000
  draws = tiny_sample(params, jax.random.PRNGKey(4), (num_draws,),
                      jnp.asarray(given, jnp.float32))
  latents, attributes = np.asarray(draws.latents), np.asarray(draws.attributes)
  assert latents.shape == (num_draws, NUM_LATENTS)
  assert attributes.shape == (num_draws, len(NUM_VALUES))
  given = np.asarray(given)
  np.testing.assert_array_equal(attributes[:, ~np.isnan(given)],
                                np.broadcast_to(given[~np.isnan(given)],
                                                (num_draws, np.sum(~np.isnan(given)))))
  ring_given = np.concatenate([np.full(NUM_LATENTS, np.nan), given])[
      list(joint.permutation)]
  node_probs = ref.conditional_node_probabilities(ring, ring_given)
  nodes = ref.lattice(ring.num_components)
  mean, var = ref.value_moments(ring, node_probs)
  position = np.argsort(joint.permutation)  # ring position of each variable of [z, y]
  if not np.all(np.isnan(given)):  # The condition moves z: ignoring it would fail.
    prior_mean, _ = ref.value_moments(ring, ref.prior_node_probabilities(ring))
    latent = position[:NUM_LATENTS]
    shift = np.abs(mean - prior_mean)[latent] / np.sqrt(var[latent] / num_draws)
    assert np.max(shift) > 20
  for j in range(NUM_LATENTS):
    standard_error = np.sqrt(var[position[j]] / num_draws)
    assert abs(latents[:, j].mean() - mean[position[j]]) < 5 * standard_error, j
  for k, num_values in enumerate(NUM_VALUES):
    if not np.isnan(given[k]):
      continue
    for value in range(num_values):
      expected = node_probs[nodes[:, position[NUM_LATENTS + k]] == value].sum()
      standard_error = np.sqrt(expected * (1 - expected) / num_draws)
      assert abs(np.mean(attributes[:, k] == value) - expected) < 5 * standard_error


def test_sample_draws_the_latents_of_p_z_with_the_attributes_summed_out(tiny):
  """`sample` (the `LatentPrior` face) against the brute-force p(z): each latent's
  mixture CDF (KS) and E[z_0 z_1]; the same draws as `sample_joint`'s latents."""
  joint, ring, params = tiny
  num_draws = 20_000
  key = jax.random.PRNGKey(7)
  sample = jax.jit(joint.sample, static_argnums=2)
  latents = np.asarray(sample(params, key, (num_draws,)), np.float64)
  assert latents.shape == (num_draws, NUM_LATENTS)
  np.testing.assert_array_equal(
      latents, jax.jit(joint.sample_joint, static_argnums=2)(params, key,
                                                             (num_draws,)).latents)
  assert joint.sample(params, key).shape == (NUM_LATENTS,)
  node_probs = ref.prior_node_probabilities(ring)
  position = np.argsort(joint.permutation)  # ring position of each variable of [z, y]
  for j in range(NUM_LATENTS):
    cdf = ref.mixture_cdf(ring, node_probs, position[j])
    assert stats.kstest(latents[:, j], cdf).pvalue > 1e-3, j
  product = latents[:, 0] * latents[:, 1]
  expected = ref.cross_moment(ring, node_probs, position[0], position[1])
  assert abs(product.mean() - expected) < 5 * product.std() / np.sqrt(num_draws)


def test_impossible_condition_gives_nan_draws(tiny, tiny_sample):
  joint, _, params = tiny
  draws = tiny_sample(params, jax.random.PRNGKey(5), (40_000,),
                      jnp.array([5.0, np.nan]))  # the compiled shape of the test above
  assert np.all(np.isnan(draws.latents)) and np.all(np.isnan(draws.attributes[:, 1]))


def test_refit_changes_only_the_latents(tiny):
  joint, _, params = tiny
  z = np.random.default_rng(6).normal(size=(200, NUM_LATENTS)) * 3.0 + 1.0
  z = jnp.asarray(z, jnp.float32)
  refit = jax.jit(joint.refit)(params, z)
  np.testing.assert_array_equal(refit.core_roots, params.core_roots)
  is_latent = np.asarray(joint.permutation) < NUM_LATENTS
  np.testing.assert_array_equal(refit.means[~is_latent], params.means[~is_latent])
  assert not np.allclose(refit.means[is_latent], params.means[is_latent])


def test_joint_prior_bad_input(tiny):
  with pytest.raises(ValueError, match="num_latents"):
    priors.make_joint_prior(0, [2])
  with pytest.raises(ValueError, match=r"num_values\[1\]"):
    priors.make_joint_prior(3, [2, 0])
  with pytest.raises(ValueError, match=r"order of range\(5\)"):
    priors.make_joint_prior(3, [2, 2], permutation=[0, 1, 2, 3, 3])
  joint, _, params = tiny
  with pytest.raises(ValueError, match=r"attributes must have shape \(\.\.\., 2\)"):
    joint.log_prob(params, jnp.zeros((4, 2)), jnp.zeros((4, 3)))
  with pytest.raises(TypeError, match="attributes must be a float array"):
    joint.log_prob(params, jnp.zeros((4, 2)), jnp.zeros((4, 2), jnp.int32))
  with pytest.raises(ValueError, match="broadcast"):
    joint.log_prob(params, jnp.zeros((4, 2)), jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
    joint.log_prob(params, jnp.zeros((4, 3)))


def test_diagonal_cores_make_a_mixture_of_factorized_distributions(x64):
  """With off_diagonal = 0: p(x) = Σ_a ∏_j Σ_k u_jka p(x_j | k) / Σ_a ∏_j Σ_k u_jka."""
  joint = priors.make_joint_prior(3, [3, 2], num_components=2, rank=4,
                                  core_init="uniform", dtype=jnp.float64)
  params = jax.jit(lambda key: priors.near_diagonal_cores(
      joint.init(key), jax.random.fold_in(key, 1), off_diagonal=0.0))(
          jax.random.key(0, impl="rbg"))
  cores, means, scales = (np.asarray(a) for a in trip.natural(params))
  u = np.diagonal(cores, axis1=-2, axis2=-1)                 # (n, K, m)
  assert np.all(cores[np.asarray(params.num_components) == 2][:, 2] == 0)  # padding
  z = np.random.default_rng(3).normal(size=(5, 3))
  attributes = np.array([[0, 1], [2, np.nan], [np.nan, 0], [np.nan, np.nan], [1, 1]])
  values = np.concatenate([z, attributes], 1)[:, list(joint.permutation)]
  expected = []
  for row in values:
    per_state = np.ones(4)
    normalizer = np.ones(4)
    for j, (value, discrete) in enumerate(zip(row, params.discrete)):
      k = params.num_components[j]
      if np.isnan(value):
        weight = np.ones(k)
      elif discrete:
        weight = (np.arange(k) == value).astype(float)
      else:
        weight = stats.norm.pdf(value, means[j, :k], scales[j, :k])
      per_state *= weight @ u[j, :k]
      normalizer *= u[j, :k].sum(0)
    expected.append(np.log(per_state.sum() / normalizer.sum()))
  np.testing.assert_allclose(jax.jit(joint.log_prob)(params, z, attributes), expected,
                             rtol=1e-10)


def test_default_init_is_near_diagonal():
  joint = priors.make_joint_prior(3, [3, 2], num_components=2, rank=4)
  params = jax.jit(joint.init)(jax.random.key(0, impl="rbg"))
  cores = np.asarray(trip.natural(params).cores)
  real = cores[:, :2]  # every variable has >= 2 components
  off = real * (1 - np.eye(4))
  np.testing.assert_allclose(off[off > 0], 0.01, rtol=1e-5)
  diagonal = np.diagonal(real, axis1=-2, axis2=-1)
  assert np.all((diagonal > 0.5) & (diagonal < 1.52))
  with pytest.raises(ValueError, match="core_init"):
    priors.make_joint_prior(3, [2], core_init="identity")
  with pytest.raises(ValueError, match="off_diagonal"):
    priors.make_joint_prior(3, [2], off_diagonal=0.0)
