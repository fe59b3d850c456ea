"""The condition violation rate and the diversity of the unrequested attributes, end to
end: `tripjax.training.cvae.violation_metrics` through the chunked sampler
(`sample_images_in_chunks`) on a fake conditional model whose images spell out the
attributes it was asked for, judged by a fake classifier that reads them back.

The fake decoder draws attribute j as a bright pixel in row j, column value_j (0 for
an attribute left open); a second fake ignores the request and always draws 0. Every
rate and distance then has a closed form in the requests and the real attributes, and
any image paired with another image's request changes the rates.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import data as data_lib
from tripjax import priors
from tripjax.configs import digits_cvae_trip
from tripjax.metrics import condition_violation
from tripjax.training import cvae

DIGITS = data_lib.attribute_specs("digits")
NUM_VALUES = tuple(spec.num_values for spec in DIGITS)
IMAGE_SHAPE = (len(DIGITS), max(NUM_VALUES), 1)
NUM_REQUESTS, CHUNK = 300, 64  # 5 chunks, the last one padded


class AttributeStamp(nn.Module):
  """z (B, d), attributes (B, a) (NaN = open) -> Bernoulli logits (B, a, max values, 1):
  +20 at (j, value_j), -20 elsewhere; an open attribute (or, with `ignore_request`,
  every attribute) gets value 0. z is not used."""
  num_values: tuple[int, ...]
  ignore_request: bool = False

  def __call__(self, z, attributes):
    values = jnp.where(jnp.isnan(attributes), 0.0, attributes)
    if self.ignore_request:
      values = jnp.zeros_like(values)
    stamp = jax.nn.one_hot(values.astype(jnp.int32), max(self.num_values))
    return (40.0 * stamp - 20.0)[..., None] + 0.0 * z[:, :1, None, None]


def stamp(attributes):
  """What `AttributeStamp` draws, as images in [0, 1] (numpy)."""
  return np.asarray(jax.nn.one_hot(np.asarray(attributes, np.int32),
                                   max(NUM_VALUES)))[..., None]


def read_stamp(images):
  """The fake classifier: images (N, a, max values, 1) -> (N, a) attribute values."""
  images = np.asarray(images)[..., 0]
  return np.stack([np.argmax(images[:, j, :count], axis=-1)
                   for j, count in enumerate(NUM_VALUES)], axis=1).astype(np.float32)


PREDICTOR = condition_violation.AttributePredictor(read_stamp, "the stamp reader")


def fake_model(ignore_request=False):
  variant = cvae.Concatenation(priors.make_prior("normal", 2), NUM_VALUES)
  return cvae.CvaeModel(variant=variant, encoder=None,
                        decoder=AttributeStamp(NUM_VALUES, ignore_request),
                        specs=DIGITS, likelihood="bernoulli", image_shape=IMAGE_SHAPE,
                        latent_dim=2)


def fake_params(model):
  return {"decoder": {}, "prior": model.prior.init(jax.random.key(0))}


@pytest.fixture(scope="module")
def real():
  """The 500 test digits' attributes drawn as stamps, read by the fake classifier
  (through `condition_violation.real_attributes`, as the CVAE reads its reference)."""
  digits = data_lib.load_dataset("digits", "test")
  truth = data_lib.attributes_from_labels("digits", digits.labels)
  dataset = data_lib.ImageDataset(
      name="digits", split="test", image_shape=IMAGE_SHAPE, num_examples=len(digits),
      binarized=True, read_fn=lambda indices: (stamp(truth[indices]),
                                               digits.labels[indices]))
  attributes = condition_violation.real_attributes(PREDICTOR, dataset, batch_size=128)
  np.testing.assert_array_equal(attributes.predicted, truth)
  assert attributes.accuracy["classifier_accuracy"] == 1.0
  return attributes


@pytest.fixture(scope="module")
def requests(real):
  config = digits_cvae_trip.get_config()
  config.eval.violation_num_samples = NUM_REQUESTS
  return cvae.violation_requests(config, real.truth)


def test_the_chunked_sampler_keeps_each_image_with_its_request(requests):
  model = fake_model()
  for kind_requests in requests.values():
    images = cvae.sample_images_in_chunks(model, fake_params(model), jax.random.key(1),
                                          kind_requests, CHUNK)
    assert images.shape == (NUM_REQUESTS,) + IMAGE_SHAPE
    np.testing.assert_array_equal(read_stamp(images),
                                  np.nan_to_num(kind_requests, nan=0.0))


def _expected_diversity(kind_requests, generated, reference, min_reference=30):
  """Closed forms: every generated image has 0 for its open attributes, so for a
  request r with open attributes U, TV(r) = 1 - (share of the real images satisfying r
  whose U are all 0), and its marginal TV for j in U = 1 - share with j = 0. Scored:
  the requests with 30 real images whose U vary, and some satisfying image."""
  tvs, marginal_tvs, unsatisfied = [], [], 0
  codes = {tuple(np.nan_to_num(request, nan=-1)) for request in kind_requests}
  for code in sorted(codes):
    request = np.array([np.nan if value < 0 else value for value in code])
    given, open_ = ~np.isnan(request), np.isnan(request)
    if not open_.any():
      continue
    real = reference[np.all(reference[:, given] == request[given], axis=1)]
    if len(real) < min_reference or len(np.unique(real[:, open_], axis=0)) < 2:
      continue  # too few real images, or nothing varies among them (digit=3)
    mine = np.all(np.isclose(kind_requests, request, equal_nan=True), axis=1)
    satisfied = np.all(generated[mine][:, given] == request[given], axis=1)
    if not satisfied.any():
      unsatisfied += 1
      continue
    tvs.append(1.0 - np.mean(np.all(real[:, open_] == 0, axis=1)))
    marginal_tvs.append(np.mean(1.0 - np.mean(real[:, open_] == 0, axis=0)))
  return np.mean(tvs), np.mean(marginal_tvs), len(tvs), unsatisfied


def test_a_sampler_that_follows_the_request_violates_nothing(requests, real):
  model = fake_model()
  results = cvae.violation_metrics(model, fake_params(model), PREDICTOR, requests,
                                   jax.random.key(2), CHUNK, real.predicted)
  for kind, kind_requests in requests.items():
    assert results[f"violation_{kind}_mean"] == 0.0
    assert results[f"violation_{kind}_any"] == 0.0
    for spec in DIGITS:
      assert results[f"violation_{kind}_{spec.name}"] == 0.0
    tv, marginal_tv, count, unsatisfied = _expected_diversity(
        kind_requests, np.nan_to_num(kind_requests, nan=0.0), real.predicted)
    assert count >= 4 and unsatisfied == 0  # single: even=0/1, at_least_5=0/1
    assert results[f"diversity_{kind}_requests"] == count
    assert results[f"diversity_{kind}_unsatisfied"] == 0
    assert results[f"diversity_{kind}_tv"] == pytest.approx(tv, abs=1e-12)
    assert results[f"diversity_{kind}_marginal_tv"] == pytest.approx(marginal_tv,
                                                                      abs=1e-12)
    assert 0.3 < tv < 1.0  # real digits do vary where the request leaves them open
    assert 0.0 < results[f"diversity_{kind}_tv_floor"] < 0.2  # chance alone: far below


def test_a_sampler_that_ignores_the_request_violates_what_is_not_zero(requests, real):
  model = fake_model(ignore_request=True)
  results = cvae.violation_metrics(model, fake_params(model), PREDICTOR, requests,
                                   jax.random.key(3), CHUNK, real.predicted)
  for kind, kind_requests in requests.items():
    asked = ~np.isnan(kind_requests)
    wrong = asked & (kind_requests != 0)  # it always draws 0
    per_attribute = [np.mean(wrong[asked[:, j], j]) for j in range(len(DIGITS))]
    for spec, rate in zip(DIGITS, per_attribute):
      assert results[f"violation_{kind}_{spec.name}"] == pytest.approx(rate, abs=1e-12)
    assert results[f"violation_{kind}_mean"] == pytest.approx(np.mean(per_attribute))
    assert results[f"violation_{kind}_any"] == pytest.approx(
        np.mean(wrong.any(axis=1)[asked.any(axis=1)]))
    assert results[f"violation_{kind}_mean"] > 0.3
    tv, marginal_tv, count, unsatisfied = _expected_diversity(
        kind_requests, np.zeros_like(kind_requests), real.predicted)
    assert unsatisfied > 0
    assert results[f"diversity_{kind}_requests"] == count
    assert results[f"diversity_{kind}_unsatisfied"] == unsatisfied
    assert results[f"diversity_{kind}_tv"] == pytest.approx(tv, abs=1e-12)
    assert results[f"diversity_{kind}_marginal_tv"] == pytest.approx(marginal_tv,
                                                                      abs=1e-12)


def test_images_paired_with_other_requests_are_caught(requests, real):
  """The same images one place off (a chunking or ordering bug): the rates of the
  faithful sampler are no longer 0, and a sampler that loses images fails loudly."""
  model = fake_model()
  params = fake_params(model)

  def shifted(key, kind_requests):
    return np.roll(cvae.sample_images_in_chunks(model, params, key, kind_requests,
                                                CHUNK), 1, axis=0)

  results = condition_violation.violation_metrics(
      shifted, PREDICTOR, requests, jax.random.key(2), DIGITS, real.predicted)
  for kind in requests:
    assert results[f"violation_{kind}_mean"] > 0.2
  with pytest.raises(ValueError, match="gave 299 images for 300 single requests"):
    condition_violation.violation_metrics(
        lambda key, kind_requests: shifted(key, kind_requests)[1:], PREDICTOR,
        requests, jax.random.key(2), DIGITS)
