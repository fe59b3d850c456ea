"""The VAE with the paper's other priors: full_gmm, full_gaussian, flows, the squared error,
the refit options, and old workdirs that predate these fields."""
import json
import os

import jax
import numpy as np
import pytest

from tripjax import flows
from tripjax.configs import digits_vae_trip
from tripjax.training import config_checks
from tripjax.training import metric_writer
from tripjax.training import vae
from tripjax.training import workdirs


def tiny_config(kind, **prior_overrides):
  """Three steps of 16 digits with latent size 4, a refit after step 2."""
  config = digits_vae_trip.get_config()
  config.data.num_train_examples = 48
  config.data.num_eval_examples = 16
  config.model.latent_dim = 4
  config.model.widths = (4, 8)
  config.prior.kind = kind
  config.prior.num_components = 3
  config.prior.rank = 2
  config.prior.refit_every_epochs = 0
  config.prior.refit_at_steps = (2,)
  config.prior.refit_num_examples = 32
  for name, value in prior_overrides.items():
    config.prior[name] = value
  config.train.num_steps = 3
  config.train.batch_size = 16
  config.train.checkpoint_every_steps = 3
  config.train.log_every_steps = 1
  config.train.progress_bar = False
  config.eval.every_epochs = 0
  config.eval.batch_size = 16
  config.eval.iwae_samples = 2
  config.eval.iwae_samples_per_chunk = 2
  config.eval.num_reconstructions = 8
  config.eval.num_prior_samples = 4
  return config


def _train(config, workdir):
  initial = vae.init_state(vae.setup(config).model, vae.make_optimizer(config),
                           jax.random.PRNGKey(0))
  state = vae.train_and_evaluate(config, str(workdir))
  records = metric_writer.MetricWriter(str(workdir)).read()
  return initial, state, records


def _changed(before, after):
  return any(not np.array_equal(a, b)
             for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


@pytest.mark.parametrize("kind, overrides, refit, likelihood", [
    ("full_gmm", {"num_mixture_components": 5}, False, None),  # never refit by default
    ("full_gaussian", {"learnable": False}, False, "squared_error"),  # N(0, I), frozen
    ("trip", {"flows": 2, "refit_redraws_cores": True}, True, None),
])
def test_vae_trains_with_the_paper_priors(tmp_path, kind, overrides, refit, likelihood):
  config = tiny_config(kind, **overrides)
  config.model.likelihood = likelihood
  vae.validate_config(config)
  assert vae.setup(config).model.likelihood == (likelihood or "bernoulli")
  initial, state, records = _train(config, tmp_path)
  final = records[-1]
  assert np.isfinite(final["test_elbo"]) and np.isfinite(final["test_iwae_2"])
  assert any(r.get("prior_refit") for r in records) == refit
  prior_params = state.params["prior"]
  assert _changed(initial.params["prior"], prior_params) == config.prior.learnable
  if kind == "full_gmm":
    assert prior_params["logits"].shape == (5,)
  if config.prior.flows:
    assert isinstance(vae.setup(config).model.prior, flows.FlowPrior)
    # The refit after step 2 redrew the roots as N(0, 1) / (m^2 N) = N(0, 1) / 12
    # (one Adam step of 3e-4 since); the init's are 1 + 0.1 N(0, 1).
    assert np.abs(np.asarray(prior_params["base"].core_roots)).max() < 0.6
    restored = vae.evaluate_checkpoint(config, str(tmp_path))
    np.testing.assert_allclose(restored["test_elbo"], final["test_elbo"], rtol=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("prior.kind", "full", "must be one of 'normal', 'gmm', 'trip', 'full_gmm'"),
    ("prior.flows", -1, "must be a non-negative integer"),
    ("prior.num_mixture_components", 0, "must be a positive integer or None"),
    ("prior.refit_kinds", ("trip", "flow"), "must be a tuple of prior kinds"),
    ("prior.refit_redraws_cores", True, "only a ring prior has cores"),
    ("model.likelihood", "gaussian", "must be one of None, 'bernoulli'"),
])
def test_bad_prior_fields_are_config_errors(field, value, message):
  config = tiny_config("full_gmm")
  section, name = field.split(".")
  config[section][name] = value
  if field == "prior.refit_redraws_cores":  # ignored unless full_gmm is refit
    vae.validate_config(config)
    config.prior.refit_kinds = ("full_gmm",)
  with pytest.raises(config_checks.ConfigError, match=message):
    vae.validate_config(config)


def test_a_workdir_saved_before_the_new_fields_restores_and_continues(tmp_path):
  config = tiny_config("trip")
  saved = json.loads(config.to_json())
  for name in ("num_mixture_components", "flows", "refit_kinds", "refit_redraws_cores"):
    del saved["prior"][name]
  del saved["model"]["likelihood"]
  del saved["data"]["split"], saved["data"]["split_seed"]
  with open(os.path.join(tmp_path, workdirs.CONFIG_FILENAME), "w") as file:
    json.dump(saved, file)
  loaded = workdirs.load_config(str(tmp_path))
  assert loaded.prior.flows == 0 and tuple(loaded.prior.refit_kinds) == ("gmm", "trip")
  assert (loaded.data.split, loaded.data.split_seed) == ("tfds", 777)
  vae.validate_config(loaded)
  workdirs.check_rerun(config, str(tmp_path))  # the same run
  config.prior.flows = 1
  with pytest.raises(workdirs.ConfigMismatchError, match="prior.flows: 0 in the run"):
    workdirs.check_rerun(config, str(tmp_path))
