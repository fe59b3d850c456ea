"""The GAN trainer's prior gradient equals `tripjax.prior.expectation_gradient`'s.

On a fixed batch of draws, the generator-and-prior update's gradient (read through an
SGD of rate 1: the update is minus the gradient) is compared with the estimator's on
the same draws for f(z) = -D(G(z)), the per-example generator loss that the prior
minimizes (eq. 10: it maximizes the critic's score of G(z)). The trainer keeps eq. 10's
batch-mean baseline, so its score-function terms are (B - 1)/B times the estimator's
leave-one-out ones. A reward of the wrong sign fails these tests.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tripjax.configs import digits_wgangp_trip
import tripjax.prior as trip
from tripjax.training import config_checks
from tripjax.training import gan

BATCH = 16


def _config(estimator="score"):
  config = digits_wgangp_trip.get_config()
  config.model.latent_dim = 4
  config.model.widths = (8, 4)
  config.prior.num_components = 3
  config.prior.rank = 2
  config.prior.gradient_estimator = estimator
  config.gan.n_critic = 1
  config.train.batch_size = BATCH
  return config


def _filled(tree, seed):
  """Arrays of `tree`'s shapes filled with small random numbers (no initializers)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: (0.1 * rng.standard_normal(leaf.shape)).astype(
      leaf.dtype), tree)


@pytest.fixture(scope="module")
def setup():
  """Model, generator/critic params, a TRIP prior with distinct components, draws."""
  config = _config()
  model = gan.build_model(config, (28, 28, 1))
  shapes = jax.eval_shape(lambda key: {
      "generator": model.generator.init(key, jnp.zeros((1, 4)))["params"],
      "critic": model.critic.init(key, jnp.zeros((1, 28, 28, 1)))["params"]},
      jax.random.key(0))
  params = _filled(shapes, seed=0)
  rng = np.random.default_rng(1)
  prior = trip.from_natural([trip.Continuous(3)] * 4, rng.uniform(0.2, 1.0, (4, 3, 2, 2)),
                            rng.uniform(-1.5, 1.5, (4, 3)), rng.uniform(0.3, 0.8, (4, 3)))
  key = jax.random.key(2)
  return config, model, {**params, "prior": prior}, key


def _trainer_gradients(config, model, params, latents):
  """The gradient of the trainer's generator-and-prior update on `latents`."""
  optimizers = gan.GanOptimizers(critic=optax.sgd(1.0), generator=optax.sgd(1.0))
  updates = gan.make_updates(model, optimizers, **gan.step_settings(config))
  trainable = {"generator": params["generator"], "prior": params["prior"]}
  new, _, _, _ = jax.jit(updates.generator)(
      trainable, optimizers.generator.init(trainable), params["critic"], {}, latents)
  return jax.tree.map(lambda before, after: before - after, trainable, new)


def _generator_loss_per_example(model, params):
  """f(z) = -D(G(z)) (B,), the per-example generator loss."""
  def f(z):
    images = model.generate(params, z)
    return -model.critic_scores(params["critic"], {}, images)[0]
  return f


def _assert_close(actual, expected, rtol=2e-4):
  scale = max(np.abs(np.asarray(expected)).max(), 1e-6)
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("estimator", trip.ESTIMATORS)
def test_trainer_prior_gradient_equals_expectation_gradient(setup, estimator):
  _, model, params, key = setup
  config = _config(estimator)
  draws = trip.draw(params["prior"], key, BATCH)
  z = trip.reparameterize(params["prior"], draws)
  latents = draws if estimator == "pathwise" else z
  trainer = _trainer_gradients(config, model, params, latents)
  f = _generator_loss_per_example(model, params)
  expected = jax.jit(lambda prior: trip.expectation_gradient(
      prior, key, f, BATCH, estimator=estimator))(params["prior"]).gradient
  shrink = (BATCH - 1) / BATCH  # eq. 10's batch-mean baseline
  _assert_close(trainer["prior"].core_roots, shrink * expected.core_roots)
  # Score: every parameter by eq. 10; pathwise: means and scales by the path, exactly.
  factor = shrink if estimator == "score" else 1.0
  _assert_close(trainer["prior"].means, factor * expected.means)
  _assert_close(trainer["prior"].log_scales, factor * expected.log_scales)
  for name in ("core_roots", "means", "log_scales"):
    assert np.abs(np.asarray(getattr(expected, name))).max() > 1e-4, name
  # The generator's gradient does not depend on the prior's estimator.
  generator = jax.grad(lambda g: jnp.mean(_generator_loss_per_example(
      model, {**params, "generator": g})(z)))(params["generator"])
  for actual, wanted in zip(jax.tree.leaves(trainer["generator"]),
                            jax.tree.leaves(generator), strict=True):
    _assert_close(actual, wanted)


def test_pathwise_train_step_moves_the_means_through_the_generator(setup):
  """One compiled step with "pathwise": finite metrics, every prior group moves."""
  _, model, params, key = setup
  config = _config("pathwise")
  optimizers = gan.make_optimizers(config)
  state = gan.GanState(
      params=params, batch_stats={},
      critic_opt_state=optimizers.critic.init(params["critic"]),
      generator_opt_state=optimizers.generator.init(
          {"generator": params["generator"], "prior": params["prior"]}))
  step = jax.jit(gan.make_train_step(model, optimizers, **gan.step_settings(config)))
  images = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (BATCH, 28, 28, 1)),
                       jnp.float32)
  new_state, metrics = step(state, {"image": images}, key)
  assert all(np.isfinite(float(value)) for value in metrics.values()), metrics
  assert float(metrics["prior_grad_norm"]) > 0
  for name in ("core_roots", "means", "log_scales"):
    assert not np.allclose(getattr(new_state.params["prior"], name),
                           getattr(params["prior"], name)), name


def test_bad_gradient_estimators_fail_clearly():
  config = _config("reinforce")
  with pytest.raises(config_checks.ConfigError, match="prior.gradient_estimator"):
    gan.validate_config(config)
  config = _config("pathwise")
  gan.validate_config(config)
  config.prior.kind = "normal"
  with pytest.raises(config_checks.ConfigError, match="needs a mixture prior"):
    gan.validate_config(config)


@pytest.mark.parametrize("estimator", trip.ESTIMATORS)
def test_under_a_flow_the_flow_is_pathwise_and_the_base_by_the_estimator(setup,
                                                                         estimator):
  """prior.flows = 2: z = f(z0). The flow's gradient is the generator loss's pathwise
  one through z; the base prior's is `expectation_gradient`'s for z0 -> f(G(f(z0)))."""
  _, _, params, key = setup
  config = _config(estimator)
  config.prior.flows = 2
  model = gan.build_model(config, (28, 28, 1))
  flow_params = _filled(jax.eval_shape(model.prior.init, key)["flow"], seed=5)
  params = {**params, "prior": {"base": params["prior"], "flow": flow_params}}
  draws = trip.draw(params["prior"]["base"], key, BATCH)
  base_z = trip.reparameterize(params["prior"]["base"], draws)
  latents = draws if estimator == "pathwise" else base_z
  trainer = _trainer_gradients(config, model, params, latents)
  f = _generator_loss_per_example(model, params)

  def pushed(flow, z0):
    return model.push({**params["prior"], "flow": flow}, z0)

  flow_expected = jax.grad(lambda flow: jnp.mean(f(pushed(flow, base_z))))(flow_params)
  for actual, wanted in zip(jax.tree.leaves(trainer["prior"]["flow"]),
                            jax.tree.leaves(flow_expected), strict=True):
    _assert_close(actual, wanted)
  assert max(np.abs(np.asarray(leaf)).max()
             for leaf in jax.tree.leaves(flow_expected)) > 1e-4
  base_expected = jax.jit(lambda base: trip.expectation_gradient(
      base, key, lambda z0: f(pushed(flow_params, z0)), BATCH,
      estimator=estimator))(params["prior"]["base"]).gradient
  shrink = (BATCH - 1) / BATCH
  _assert_close(trainer["prior"]["base"].core_roots, shrink * base_expected.core_roots)
  factor = shrink if estimator == "score" else 1.0
  _assert_close(trainer["prior"]["base"].means, factor * base_expected.means)
  _assert_close(trainer["prior"]["base"].log_scales, factor * base_expected.log_scales)


def test_a_gan_with_flows_trains_samples_and_validates():
  config = _config()
  config.prior.flows = 2
  gan.validate_config(config)
  model = gan.build_model(config, (28, 28, 1))
  optimizers = gan.make_optimizers(config)
  state = gan.init_state(model, optimizers, jax.random.key(0))
  step = jax.jit(gan.make_train_step(model, optimizers, **gan.step_settings(config)))
  images = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (BATCH, 28, 28, 1)),
                       jnp.float32)
  new_state, metrics = step(state, {"image": images}, jax.random.key(1))
  assert all(np.isfinite(float(value)) for value in metrics.values()), metrics
  for part in ("base", "flow"):
    moved = [not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(state.params["prior"][part]),
        jax.tree.leaves(new_state.params["prior"][part]))]
    assert any(moved), part
  z = model.sample_latents(new_state.params["prior"], jax.random.key(2), 5)
  assert z.shape == (5, 4) and np.all(np.isfinite(z))
  config.prior.flows = -1
  with pytest.raises(config_checks.ConfigError, match="prior.flows"):
    gan.validate_config(config)
