"""Tests for tripjax/training/cvae.py and its command lines (train.cvae, train.cvae_sample).

The digits runs use a digit classifier with random weights (saved under the stock
classifier config, so `classifier.get_or_train` reuses it instead of training one): the
violation rates then measure nothing, but every step of the metric runs. All sample
grids, violation chunks and evaluation batches have 20 images, so each sampler is
compiled once.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tests.test_training import compilation_cache_dir  # noqa: F401  (autouse XLA cache)
from tests.training_helpers import SimulatedKill
from tests.training_helpers import kill_after
from tests.training_helpers import leaves
from train import cvae as train_cvae
from train import cvae_sample
from tripjax import data as data_lib
from tripjax import priors
from tripjax.configs import celeba_attribute_classifier
from tripjax.configs import celeba_cvae_trip
from tripjax.configs import digits_classifier
from tripjax.configs import digits_cvae_trip
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd
from tripjax.metrics import condition_violation
from tripjax.models import vae as vae_models
from tripjax.training import classifier
from tripjax.training import cvae
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import rng as rng_lib
from tripjax.training import trainers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = data_lib.attribute_specs("digits")
LATENT_DIM, NUM_IMAGES = 4, 20


def tiny_config(kind="trip", classifier_workdir="unused", **train_overrides):
  """The quickstart shrunk to seconds: 64 train digits (half the labels hidden), batch
  16 (4 steps an epoch), latent 4, a ring of rank 2; 20 images per grid and chunk."""
  config = digits_cvae_trip.get_config()
  config.model.kind = kind
  config.data.num_train_examples = 64
  config.data.num_eval_examples = 40
  config.data.hide_attribute_fraction = 0.5
  config.model.latent_dim = LATENT_DIM
  config.model.widths = (4,)
  config.prior.num_components = 3
  config.prior.rank = 2
  config.prior.refit_num_examples = 48  # refit after epoch 1 (refit_every_epochs = 5)
  config.train.num_epochs = 2
  config.train.batch_size = 16
  config.train.checkpoint_every_steps = 3
  config.train.log_every_steps = 1
  config.train.progress_bar = False
  config.eval.batch_size = NUM_IMAGES
  config.eval.every_epochs = 1
  config.eval.grid_columns = 2  # digit=0..9, two images each
  config.eval.num_prior_samples = NUM_IMAGES
  config.eval.violation_num_samples = NUM_IMAGES
  config.eval.classifier_workdir = classifier_workdir
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


@pytest.fixture(scope="module")
def classifier_workdir(tmp_path_factory):
  """A digit classifier with random weights where `get_or_train` reuses it."""
  workdir = str(tmp_path_factory.mktemp("classifier"))
  config = digits_classifier.get_config()
  params = jax.jit(classifier_fd.init_params, static_argnums=1)(
      jax.random.key(0, impl="rbg"), config.model.feature_dim)
  classifier_fd.save_classifier(workdir, params, {"config": config.to_dict(),
                                                  "test_accuracy": 0.1})
  return workdir


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory, classifier_workdir):
  """Two epochs (4 steps each) of the tiny CVAE-TRIP, start to end."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state = cvae.train_and_evaluate(tiny_config(classifier_workdir=classifier_workdir),
                                  workdir)
  return workdir, state


def _records(workdir, split):
  return [r for r in metric_writer.MetricWriter(workdir).read() if r["split"] == split]


def _assert_same_state(state, expected_state):
  for leaf, expected in zip(leaves(state), leaves(expected_state), strict=True):
    np.testing.assert_array_equal(leaf, expected)


def _grid_size(rows, columns, side=28, padding=2, scale=2):
  """(width, height) of a PNG grid of `image_grid.make_grid`."""
  return (scale * (columns * (side + padding) + padding),
          scale * (rows * (side + padding) + padding))


def test_run_writes_bounds_grids_violation_rates_and_its_ring_order(uninterrupted_run):
  workdir, state = uninterrupted_run
  train = _records(workdir, "train")
  assert [r["step"] for r in train] == list(range(1, 9))
  for record in train:  # eq. 14: bound = E[log p(x|z)] + E[log p(y_obs|z)] - KL
    np.testing.assert_allclose(record["bound"], record["log_likelihood"]
                               + record["attribute_log_likelihood"] - record["kl"],
                               rtol=1e-4)
    # The loss weighs the attribute term by the config's w (train.attribute_weight).
    weight = tiny_config().train.attribute_weight
    assert record["attribute_log_likelihood"] <= 0
    np.testing.assert_allclose(record["loss"], -(
        record["bound"] + (weight - 1) * record["attribute_log_likelihood"]), rtol=1e-5)
  evals = _records(workdir, "eval")
  assert [(r["step"], r["epoch"]) for r in evals] == [(4, 1), (8, 2)]
  assert evals[0]["prior_refit"] and "prior_refit" not in evals[1]
  assert "violation_single_mean" not in evals[0]  # after the last step only
  final = evals[1]
  # The bounds on log p(x, y), log p(x | y) = log p(x, y) - log p(y) and log p(x).
  np.testing.assert_allclose(final["test_bound_x_given_y"],
                             final["test_bound_x_y"] - final["test_log_prob_y"], rtol=1e-5)
  np.testing.assert_allclose(final["test_elbo"],
                             final["test_log_likelihood"] - final["test_kl"], rtol=1e-5)
  np.testing.assert_allclose(final["test_bound_x_y"], final["test_elbo"]
                             + final["test_attribute_log_likelihood"], rtol=1e-5)
  assert final["test_log_prob_y"] < 0 and final["test_bound_x_y"] < final["test_elbo"]
  for kind in cvae.VIOLATION_KINDS:
    for name in ["mean", "any"] + [spec.name for spec in DIGITS]:
      assert 0.0 <= final[f"violation_{kind}_{name}"] <= 1.0
  for name in ["classifier_accuracy"] + [f"classifier_accuracy_{s.name}" for s in DIGITS]:
    assert 0.0 <= final[name] <= 1.0
  for epoch in (1, 2):
    with Image.open(os.path.join(workdir, "images",
                                 f"epoch_{epoch:03d}_conditional_samples.png")) as png:
      assert png.size == _grid_size(rows=10, columns=2)
    with Image.open(os.path.join(workdir, "images",
                                 f"epoch_{epoch:03d}_prior_samples.png")) as png:
      assert png.size == _grid_size(rows=4, columns=5)
  expected = priors.random_permutation(LATENT_DIM + len(DIGITS), seed=0)
  np.testing.assert_array_equal(state.permutation, expected)
  restored, position = loop.restore_checkpoint(workdir, state)
  assert position.step == 8
  np.testing.assert_array_equal(restored.permutation, expected)
  with open(os.path.join(workdir, "config.json")) as file:
    assert json.load(file)["task"] == "cvae"


def test_a_killed_run_resumes_bit_identically(uninterrupted_run, classifier_workdir,
                                              tmp_path):
  """Half of the labels hidden: the resumed run must hide the same ones."""
  expected_workdir, expected_state = uninterrupted_run
  workdir = str(tmp_path)
  cvae.train_and_evaluate(
      tiny_config(classifier_workdir=classifier_workdir, max_steps=2), workdir)
  with pytest.raises(SimulatedKill):  # checkpoints at 3, 4 (epoch end), 6
    cvae.train_and_evaluate(tiny_config(classifier_workdir=classifier_workdir),
                            workdir, step_hooks=[kill_after(7)])
  assert loop.restore_checkpoint(workdir, expected_state)[1].step == 6
  state = cvae.train_and_evaluate(tiny_config(classifier_workdir=classifier_workdir),
                                  workdir)
  _assert_same_state(state, expected_state)
  assert (metric_writer.MetricWriter(workdir).read()
          == metric_writer.MetricWriter(expected_workdir).read())


def test_hidden_labels_are_a_function_of_the_example_only():
  config = tiny_config()
  full = data_lib.load_dataset("digits", "train")
  subset = full.take(64)
  prepare_subset = cvae.make_prepare_batch(config, subset)
  prepare_full = cvae.make_prepare_batch(config, full)
  indices = np.arange(64)
  _, labels = subset.read(indices)
  whole = prepare_subset(indices, None, labels)["attributes"]
  order = np.random.default_rng(1).permutation(64)
  for batch in np.split(order, 4):  # other batches, another epoch's order
    shuffled = prepare_subset(batch, None, labels[batch])["attributes"]
    np.testing.assert_array_equal(shuffled, whole[batch])
  # The same rows when the split is not cut to 64 examples.
  np.testing.assert_array_equal(prepare_full(indices, None, labels)["attributes"], whole)
  truth = data_lib.attributes_from_labels("digits", labels)
  hidden = np.isnan(whole)
  np.testing.assert_array_equal(whole[~hidden], truth[~hidden])
  everything = prepare_full(np.arange(len(full)), None, full.labels)["attributes"]
  share = np.mean(np.isnan(everything))  # 12,000 independent labels
  assert abs(share - 0.5) < 5 * np.sqrt(0.25 / everything.size)
  config.data.hide_attribute_fraction = 0.0
  assert not np.any(np.isnan(cvae.make_prepare_batch(config, subset)(
      indices, None, labels)["attributes"]))


def test_the_checkpoints_ring_order_wins_over_the_config(uninterrupted_run,
                                                         classifier_workdir, tmp_path,
                                                         capsys):
  source, state = uninterrupted_run
  workdir = str(tmp_path / "run")
  shutil.copytree(source, workdir)
  config = tiny_config(classifier_workdir=classifier_workdir, num_epochs=3,
                       max_steps=9)
  config.prior.permutation_seed = 3
  assert (priors.random_permutation(7, seed=3)
          != priors.random_permutation(7, seed=0))
  continued = cvae.train_and_evaluate(config, workdir, allow_config_change=True)
  assert "using the checkpoint's order" in capsys.readouterr().out
  np.testing.assert_array_equal(continued.permutation, state.permutation)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(continued.params))
  sampler = cvae.load_sampler(workdir, config=config)
  assert sampler.model.permutation == tuple(np.asarray(state.permutation))
  assert sampler.position.step == 9


def test_eval_only_checkpoint_sampler_and_sampling_cli(uninterrupted_run, tmp_path,
                                                       capsys):
  workdir, _ = uninterrupted_run
  final = _records(workdir, "eval")[-1]
  assert train_cvae.main([f"--workdir={workdir}", "--eval_only"]) == 0
  record = json.load(open(os.path.join(workdir, "eval_metrics.json")))
  assert record["split"] == "checkpoint_eval" and record["step"] == 8
  for name in ("test_bound_x_given_y", "test_elbo", "violation_subset_mean",
               "classifier_accuracy"):
    np.testing.assert_allclose(record[name], final[name], rtol=1e-5)

  sampler = trainers.load_checkpoint_sampler(workdir)  # for FID: unconditional
  images = np.asarray(sampler.sample_fn(jax.random.PRNGKey(0), NUM_IMAGES))
  assert images.shape == (NUM_IMAGES, 28, 28, 1)
  assert images.min() >= 0 and images.max() <= 1

  out = str(tmp_path / "threes.png")
  capsys.readouterr()
  assert cvae_sample.main([f"--workdir={workdir}", "--attr", "digit=3", "--attr",
                           "even=0", f"--num={NUM_IMAGES}", f"--out={out}"]) == 0
  assert "given digit=3, even=0 from step 8" in capsys.readouterr().out
  with Image.open(out) as png:
    assert png.size == _grid_size(rows=4, columns=5)
  assert cvae_sample.main([f"--workdir={workdir}", f"--num={NUM_IMAGES}"]) == 0
  assert "no attribute (unconditional)" in capsys.readouterr().out
  assert os.path.exists(os.path.join(workdir, "samples", "unconditional.png"))


@pytest.mark.parametrize("attributes, message", [
    (["colour=red"], "--attr: unknown attribute 'colour'; valid names: digit, even, "
     "at_least_5."),
    (["digit=12"], "--attr: attribute 'digit' has no value '12'; valid values: 0, 1, "
     "2, 3, 4, 5, 6, 7, 8, 9."),
    (["even"], "is not NAME=VALUE; valid names: digit, even, at_least_5."),
    (["even=1", "even=0"], "attribute 'even' is given twice."),
])
def test_sampling_cli_rejects_bad_attributes_in_one_line(uninterrupted_run, capsys,
                                                         attributes, message):
  workdir, _ = uninterrupted_run
  argv = [f"--workdir={workdir}"]
  for attribute in attributes:
    argv += ["--attr", attribute]
  assert cvae_sample.main(argv) == 2
  error = capsys.readouterr().err
  assert message in error and len(error.strip().splitlines()) == 1, error


def test_concat_baseline_trains_and_its_decoder_reads_the_request(classifier_workdir,
                                                                  tmp_path):
  workdir = str(tmp_path)
  state = cvae.train_and_evaluate(
      tiny_config("concat", classifier_workdir=classifier_workdir, num_steps=3), workdir)
  assert state.permutation is None and state.params["prior"] == {}
  train = _records(workdir, "train")
  assert [r["step"] for r in train] == [1, 2, 3]
  for record in train:  # the ELBO of log p(x | y_obs): no attribute term
    assert "attribute_log_likelihood" not in record
    np.testing.assert_allclose(record["bound"], record["log_likelihood"] - record["kl"],
                               rtol=1e-4)
  final = _records(workdir, "eval")[-1]
  assert final["step"] == 3 and np.isfinite(final["test_bound_x_given_y"])
  assert "test_bound_x_y" not in final and "test_elbo" not in final
  assert 0.0 <= final["violation_single_mean"] <= 1.0
  sampler = cvae.load_sampler(workdir)
  z = np.zeros((2, LATENT_DIM), np.float32)
  three, five = (sampler.model.decode_mean(
      sampler.params, z, np.tile(sampler.request([f"digit={digit}"]), (2, 1)))
                 for digit in (3, 5))
  assert np.max(np.abs(np.asarray(three) - np.asarray(five))) > 0


@pytest.mark.parametrize("kind", ["cvae", "cvae_imputed"])
def test_textbook_baselines_train_and_both_networks_read_the_request(
    kind, classifier_workdir, tmp_path, capsys):
  workdir = str(tmp_path)
  config = tiny_config(kind, classifier_workdir=classifier_workdir, num_steps=3)
  config.imputer.widths, config.imputer.hidden, config.imputer.num_epochs = (4,), 8, 1
  state = cvae.train_and_evaluate(config, workdir)
  header = capsys.readouterr().out.splitlines()[0]
  assert ("hidden labels imputed by a predictor" in header) == (kind == "cvae_imputed")
  assert state.permutation is None and state.params["prior"] == {}
  for record in _records(workdir, "train"):  # the ELBO of log p(x | y_obs)
    assert "attribute_log_likelihood" not in record
    np.testing.assert_allclose(record["bound"], record["log_likelihood"] - record["kl"],
                               rtol=1e-4)
  final = _records(workdir, "eval")[-1]
  assert final["step"] == 3 and np.isfinite(final["test_bound_x_given_y"])
  for requests in cvae.VIOLATION_KINDS:
    assert 0.0 <= final[f"violation_{requests}_mean"] <= 1.0
    # The random classifier reads 40 digits: few requests (maybe none) qualify.
    assert final[f"diversity_{requests}_requests"] >= 0
    for name in ("tv", "marginal_tv"):
      value = final[f"diversity_{requests}_{name}"]
      assert (0.0 <= value <= 1.0 if final[f"diversity_{requests}_requests"]
              else value == "nan"), (requests, name, value)
  assert os.path.exists(os.path.join(workdir, cvae.IMPUTER_DIRNAME,
                                     "attribute_classifier.msgpack")) == (
                                         kind == "cvae_imputed")
  sampler = cvae.load_sampler(workdir)
  assert isinstance(sampler.model.encoder, vae_models.ConditionalEncoder)
  images = np.asarray(data_lib.load_dataset("digits", "test")[np.arange(2)])
  z = np.zeros((2, LATENT_DIM), np.float32)
  posteriors, decoded = [], []
  for digit in (3, 5):
    request = np.tile(sampler.request([f"digit={digit}"]), (2, 1))
    posteriors.append(np.asarray(sampler.model.posterior(sampler.params, images,
                                                         request)[0]))
    decoded.append(np.asarray(sampler.model.decode_mean(sampler.params, z, request)))
  assert np.max(np.abs(posteriors[0] - posteriors[1])) > 0  # q(z | x, y)
  assert np.max(np.abs(decoded[0] - decoded[1])) > 0  # p(x | z, y)
  unknown = np.asarray(sampler.model.posterior(sampler.params, images)[0])
  assert np.max(np.abs(unknown - posteriors[0])) > 0  # "unknown" is its own value


def test_a_run_from_before_the_diversity_measure_still_evaluates(uninterrupted_run,
                                                                tmp_path):
  """A workdir whose config.json has no eval.diversity_min_reference (older runs)."""
  source, _ = uninterrupted_run
  workdir = str(tmp_path / "old")
  shutil.copytree(source, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as file:
    saved = json.load(file)
  del saved["eval"]["diversity_min_reference"]
  with open(path, "w") as file:
    json.dump(saved, file)
  assert train_cvae.main([f"--workdir={workdir}", "--eval_only"]) == 0
  record = json.load(open(os.path.join(workdir, "eval_metrics.json")))
  assert record["diversity_single_requests"] >= 0 and "violation_single_mean" in record


def test_cvae_imputed_trains_on_imputed_labels_that_keep_the_visible_ones():
  config = tiny_config("cvae_imputed")
  config.imputer.widths, config.imputer.hidden, config.imputer.num_epochs = (4,), 8, 1
  train = data_lib.load_dataset("digits", "train").take(64)
  imputed = cvae.impute_hidden_labels(config, train, rng_lib.RandomStreams(0)).attributes
  indices = np.arange(64)
  _, labels = train.read(indices)
  batch = cvae.make_prepare_batch(config, train, imputed)(indices, None, labels)
  truth = data_lib.attributes_from_labels("digits", labels)
  hidden = cvae.hidden_labels(config, train)
  assert hidden.mean() > 0.3 and not np.any(np.isnan(batch["attributes"]))
  np.testing.assert_array_equal(batch["attributes"][~hidden], truth[~hidden])
  for j, spec in enumerate(DIGITS):
    assert set(batch["attributes"][:, j]) <= set(range(spec.num_values))


@pytest.mark.parametrize("override, message", [
    ("model.kind=gan", "model.kind = 'gan': must be one of 'trip', 'cvae', "
     "'cvae_imputed', 'concat'."),
    ("data.name=cifar10", "data.name = 'cifar10': must be one of 'digits', 'mnist', "
     "'celeb_a'."),
    ("data.hide_attribute_fraction=1.5", "must be a number >= 0.0 and <= 1.0."),
    ("eval.grid_requests=('digit=11',)", "attribute 'digit' has no value '11'"),
    ("train.attribute_weight=-1.0", "train.attribute_weight = -1.0: must be a number "
     ">= 0.0."),
    ("eval.violation_subset_sizes=(2,4)", "must be sizes in [1, 3] (the digits "
     "attributes: digit, even, at_least_5)."),
])
def test_bad_configs_fail_in_one_line_and_write_nothing(tmp_path, capsys, override,
                                                        message):
  workdir = tmp_path / "run"
  assert train_cvae.main([f"--workdir={workdir}", "--config=digits_cvae_trip",
                          f"--config.{override}"]) == 2
  error = capsys.readouterr().err
  assert message in error and len(error.strip().splitlines()) == 1, error
  assert not workdir.exists()


def test_the_attribute_weight_scales_only_the_attribute_term_of_the_objective():
  """train.attribute_weight w: the step minimizes -(log p(x|z) + w log p(y_obs|z) -
  KL); with plain SGD the update is linear in w and w = 1 is eq. 14's bound."""
  config = tiny_config()
  model = cvae.build_model(config, (28, 28, 1), "bernoulli")
  optimizer = optax.sgd(1.0)
  state = cvae.init_state(model, optimizer, rng_lib.RandomStreams(0).init_key())
  images = jnp.asarray(data_lib.load_dataset("digits", "train")[:8])
  batch = {"image": images,
           "attributes": jnp.asarray([[3, 0, 0], [np.nan, 1, 1]] * 4, jnp.float32)}
  rng = rng_lib.RandomStreams(0).key("train_step")
  updates, losses = {}, {}
  for weight in (0.0, 1.0, 3.0):
    step = jax.jit(cvae.make_train_step(model, optimizer, attribute_weight=weight))
    new_state, metrics = step(state, batch, rng)
    updates[weight] = jax.tree.map(lambda new, old: new - old, new_state.params,
                                   state.params)
    losses[weight] = metrics
  bound = losses[1.0]["bound"]
  attribute = losses[1.0]["attribute_log_likelihood"]
  assert attribute < -0.1  # the term is there to weigh
  for weight, metrics in losses.items():
    np.testing.assert_allclose(metrics["bound"], bound, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], -(bound + (weight - 1) * attribute),
                               rtol=1e-5)
  # update(3) - update(1) = 2 (update(1) - update(0)), and it is not zero.
  for three, one, zero in zip(*(jax.tree.leaves(updates[w]) for w in (3.0, 1.0, 0.0)),
                              strict=True):
    np.testing.assert_allclose(three - one, 2 * (one - zero), atol=2e-5)
  prior_change = [np.abs(one - zero).max() for one, zero in zip(
      jax.tree.leaves(updates[1.0]["prior"]), jax.tree.leaves(updates[0.0]["prior"]),
      strict=True)]
  assert max(prior_change) > 1e-4
  # A baseline has no attribute term: the weight changes nothing.
  baseline = cvae.build_model(tiny_config(kind="cvae"), (28, 28, 1), "bernoulli")
  state = cvae.init_state(baseline, optimizer, rng_lib.RandomStreams(0).init_key())
  results = [jax.jit(cvae.make_train_step(baseline, optimizer, attribute_weight=w))(
      state, batch, rng) for w in (1.0, 3.0)]
  for one, three in zip(*(jax.tree.leaves(result) for result in results), strict=True):
    np.testing.assert_array_equal(one, three)


def test_the_diagnosis_stages_of_a_run(uninterrupted_run, classifier_workdir):
  """benchmarks.cvae_diagnosis on a trained run: every stage is an error rate, the
  classifier's is its error on the real validation digits, and the prior's classifier
  is the argmax of log p(digit = k | z) at the posterior means."""
  from benchmarks import cvae_diagnosis
  workdir, _ = uninterrupted_run
  errors = cvae_diagnosis.digit_errors(workdir, classifier_workdir)
  assert set(errors) == {stage for stage, _ in cvae_diagnosis.STAGES}
  assert all(0.0 <= value <= 1.0 for value in errors.values())
  predictor = condition_violation.load_attribute_predictor("digits",
                                                           classifier_workdir, 250)
  real = condition_violation.real_attributes(
      predictor, data_lib.load_dataset("digits", "validation", binarize=False), 250)
  assert errors["classifier"] == pytest.approx(
      1 - real.accuracy["classifier_accuracy_digit"])
  sampler = cvae.load_sampler(workdir)
  validation = data_lib.load_dataset("digits", "validation")
  means = sampler.model.posterior(sampler.params, jnp.asarray(validation.images))[0]
  scores = np.stack([np.asarray(sampler.model.variant.joint_log_prob_fn(
      sampler.params["prior"], jnp.asarray(
          np.tile([[value, np.nan, np.nan]], (len(means), 1)), jnp.float32))(means)[1])
      for value in range(10)], axis=1)
  # log p(digit = k | z): a distribution over k at every z.
  np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, rtol=1e-4)
  assert errors["prior_on_validation"] == pytest.approx(
      np.mean(scores.argmax(axis=1) != validation.labels))


def _three_steps_config():
  config = tiny_config(max_steps=3)
  config.eval.violation_num_samples = 0
  return config


_SHARDED_RUN_SCRIPT = textwrap.dedent("""
    import sys, tempfile
    import jax, numpy as np
    from tests import test_cvae_training
    from tripjax.training import cvae
    assert jax.device_count() == 2, jax.devices()
    with tempfile.TemporaryDirectory() as workdir:
      state = cvae.train_and_evaluate(test_cvae_training._three_steps_config(), workdir)
    assert state.params["prior"].core_roots.sharding.is_fully_replicated
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]
    np.savez(sys.argv[1], *leaves)
""")


def test_the_first_steps_on_two_devices_equal_the_one_device_run(
    compilation_cache_dir, tmp_path):  # noqa: F811
  """3 steps with the batch split over 2 host devices (a subprocess) and on one."""
  environment = dict(os.environ, JAX_PLATFORMS="cpu",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2",
                     JAX_COMPILATION_CACHE_DIR=compilation_cache_dir,
                     JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  sharded_path = str(tmp_path / "sharded.npz")
  result = subprocess.run([sys.executable, "-c", _SHARDED_RUN_SCRIPT, sharded_path],
                          cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "2 device(s)" in result.stdout
  single = cvae.train_and_evaluate(_three_steps_config(), str(tmp_path / "single"))
  with np.load(sharded_path) as sharded:
    sharded_leaves = [sharded[f"arr_{i}"] for i in range(len(sharded.files))]
  for leaf, expected in zip(sharded_leaves, leaves(single), strict=True):
    np.testing.assert_allclose(leaf, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(sharded_leaves[-1], single.permutation)


def _shrink_celeba(config, **fields):
  """A 64x64 CelebA config at toy sizes on 8 mocked faces."""
  config.data.num_train_examples = 8
  config.data.num_eval_examples = 8
  config.train.batch_size = 4
  config.train.num_steps = 2  # one epoch
  config.train.progress_bar = False
  config.train.log_every_steps = 1
  config.eval.batch_size = 8
  for field, value in fields.items():
    section, name = field.split("__")
    config[section][name] = value
  return config


def test_celeba_attribute_classifier_and_cvae_on_mock_data(tmp_path):
  """The shipped CelebA configs, shrunk: the attribute classifier trains on the shared
  loop and is cached; the CVAE-TRIP over the 14 conditions builds, loads that
  classifier for its metric and takes a step."""
  classifier_dir = str(tmp_path / "attr_classifier")
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    classifier_config = _shrink_celeba(celeba_attribute_classifier.get_config(),
                                       model__widths=(4, 8), model__hidden=8)
    (model, _), metadata = classifier.get_or_train(classifier_config, classifier_dir,
                                                   log=lambda line: None)
    assert model.num_values == (2,) * 14
    for split in ("validation", "test"):
      assert 0.0 <= metadata[f"{split}_accuracy"] <= 1.0
      assert 0.0 <= metadata[f"{split}_accuracy_Eyeglasses"] <= 1.0
    lines = []
    classifier.get_or_train(classifier_config, classifier_dir, log=lines.append)
    assert lines[0].startswith("Using the cached classifier")

    config = _shrink_celeba(
        celeba_cvae_trip.get_config(), model__latent_dim=LATENT_DIM,
        model__widths=(4,), prior__num_components=3, prior__rank=2,
        train__max_steps=1, eval__classifier_workdir=classifier_dir)
    workdir = str(tmp_path / "cvae")
    state = cvae.train_and_evaluate(config, workdir)
  assert state.permutation.shape == (LATENT_DIM + 14,)
  assert loop.restore_checkpoint(workdir, state)[1].step == 1
  train = _records(workdir, "train")
  assert [r["step"] for r in train] == [1] and np.isfinite(train[0]["bound"])
  assert train[0]["attribute_log_likelihood"] < 0  # half of the 14 labels observed


def test_a_missing_celeba_classifier_names_the_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m train.train_classifier "
                     "--config celeba_attribute_classifier --workdir"):
    attribute_classifier.load_from_workdir(str(tmp_path))
