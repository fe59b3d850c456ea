"""Tests for tripjax/metrics/condition_violation.py and attribute_classifier.py (the
attribute classifier trained on the shared loop by tripjax/training/classifier.py)."""
import jax
import numpy as np
import optax
import pytest

from tripjax import data
from tripjax import metrics
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd
from tripjax.training import classifier
from tripjax.training import loop

DIGITS = data.attribute_specs("digits")


def test_violation_rates_on_a_hand_made_case():
  nan = np.nan
  predicted = np.array([[1, 0, 3], [0, 0, 3], [1, 1, 2], [0, 1, 2]])
  requested = np.array([[1, nan, nan], [1, 0, nan], [nan, nan, nan], [0, 0, nan]])
  rates = metrics.violation_rates(predicted, requested)
  # Attribute 0: asked in rows 0, 1, 3, violated in row 1. Attribute 1: asked in rows
  # 1, 3, violated in row 3. Attribute 2: never asked.
  per_attribute, num_requested, violated_rows, asking_rows = [], [], set(), set()
  for j in range(3):
    asked = [i for i in range(4) if not np.isnan(requested[i, j])]
    wrong = [i for i in asked if predicted[i, j] != requested[i, j]]
    asking_rows |= set(asked)
    violated_rows |= set(wrong)
    num_requested.append(len(asked))
    per_attribute.append(len(wrong) / len(asked) if asked else nan)
  np.testing.assert_array_equal(rates.per_attribute, per_attribute)
  np.testing.assert_array_equal(rates.per_attribute, [1 / 3, 1 / 2, nan])
  np.testing.assert_array_equal(rates.num_requested, num_requested)
  assert rates.mean == pytest.approx((1 / 3 + 1 / 2) / 2)
  assert rates.any_violation == pytest.approx(len(violated_rows) / len(asking_rows))
  assert rates.any_violation == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match=r"\(n, a\)"):
    metrics.violation_rates(predicted, requested[:, :2])


def test_random_requests_from_reference_are_satisfiable_subsets():
  reference = data.attributes_from_labels("digits", np.arange(10, dtype=np.int32))
  requests = metrics.random_requests(DIGITS, 2000, (2, 3), seed=0,
                                     reference_attributes=reference)
  assert requests.shape == (2000, 3) and requests.dtype == np.float32
  sizes = np.sum(~np.isnan(requests), axis=1)
  assert set(sizes) == {2, 3}
  assert abs(np.mean(sizes == 2) - 0.5) < 5 * np.sqrt(0.25 / 2000)
  for request in requests:  # some digit has every requested value
    asked = ~np.isnan(request)
    assert np.any(np.all(reference[:, asked] == request[asked], axis=1)), request
  np.testing.assert_array_equal(
      requests, metrics.random_requests(DIGITS, 2000, (2, 3), seed=0,
                                        reference_attributes=reference))
  assert not np.array_equal(
      requests, metrics.random_requests(DIGITS, 2000, (2, 3), seed=1,
                                        reference_attributes=reference),
      equal_nan=True)


def test_single_random_requests_cover_every_attribute_and_value():
  requests = metrics.random_requests(DIGITS, 3000, (1,), seed=2)
  asked = ~np.isnan(requests)
  assert np.all(asked.sum(axis=1) == 1)
  counts = asked.sum(axis=0)  # each attribute with probability 1/3
  assert np.all(np.abs(counts / 3000 - 1 / 3) < 5 * np.sqrt(2 / 9 / 3000))
  for j, spec in enumerate(DIGITS):
    assert set(requests[asked[:, j], j]) == set(range(spec.num_values))
  with pytest.raises(ValueError, match="subset_sizes"):
    metrics.random_requests(DIGITS, 5, (4,), seed=0)


def test_total_variation_on_hand_made_rows():
  # {0: 1/4, 1: 3/4} against {1: 1/2, 2: 1/2}: (1/4 + 1/4 + 1/2) / 2.
  assert metrics.total_variation([[0], [1], [1], [1]], [[1], [2]]) == pytest.approx(0.5)
  # Rows are compared whole: (0, 1) and (1, 0) are not (0, 0) or (1, 1).
  assert metrics.total_variation([[0, 1], [1, 0]], [[0, 0], [1, 1]]) == 1.0
  assert metrics.total_variation([[2, 1], [0, 0]], [[0, 0], [2, 1]]) == 0.0
  with pytest.raises(ValueError, match="non-empty"):
    metrics.total_variation(np.zeros((0, 1)), [[1]])


def test_unrequested_diversity_on_a_hand_made_case():
  nan = np.nan
  reference = np.array([[0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1],
                        [1, 1, 1], [1, 0, 0]])
  rows = [  # (request, what the classifier reads on the image made for it)
      # A = (?, ?, 0): real (a0, a1) = (0,0), (1,1), (1,0) (rows 0, 1, 6); generated
      # (0,1), (1,0), the third image violates. Joint TV = (1/3 + 1/3 + 1/6 + 1/2) / 2
      # = 2/3; marginal: a0 {1/2, 1/2} vs {1/3, 2/3} and a1 {1/2, 1/2} vs {2/3, 1/3},
      # 1/6 each.
      ([nan, nan, 0], [0, 1, 0]), ([nan, nan, 0], [1, 0, 0]), ([nan, nan, 0], [1, 1, 1]),
      # B = (0, ?, ?): real (a1, a2) = (0,0), (1,1), (0,1) (rows 0, 2, 4); generated
      # (0,0) twice. Joint TV = (2/3 + 1/3 + 1/3) / 2 = 2/3; marginal: a1 {1, 0} vs
      # {2/3, 1/3}: 1/3; a2 {1, 0} vs {1/3, 2/3}: 2/3; mean 1/2.
      ([0, nan, nan], [0, 0, 0]), ([0, nan, nan], [0, 0, 0]),
      # C = (1, 1, ?): 2 real images (rows 1, 5) < 3: not scored.
      ([1, 1, nan], [1, 1, 0]),
      # D = (?, 0, ?): 4 real images, but its only image violates: unsatisfied.
      ([nan, 0, nan], [1, 1, 0]),
      # E = (0, 0, 0): nothing left open.
      ([0, 0, 0], [0, 0, 0]),
      # G = (?, 1, 0): real a0 = 1 for its only row (1): with min_reference 1 it is
      # still left out, since nothing varies.
      ([nan, 1, 0], [0, 1, 0]),
  ]
  requests = np.array([request for request, _ in rows], np.float32)
  generated = np.array([image for _, image in rows])
  diversity = metrics.unrequested_diversity(requests, generated, reference,
                                            min_reference=3)
  assert diversity.num_requests == 2 and diversity.num_unsatisfied == 1
  assert diversity.tv == pytest.approx((2 / 3 + 2 / 3) / 2)
  assert diversity.marginal_tv == pytest.approx((1 / 6 + 1 / 2) / 2)
  # The order of the images does not matter, their pairing with requests does.
  order = np.random.default_rng(0).permutation(len(rows))
  assert metrics.unrequested_diversity(requests[order], generated[order], reference,
                                       min_reference=3) == diversity
  # With C scored too: real a2 {0: 1/2, 1: 1/2} against generated {0: 1}: 1/2.
  loose = metrics.unrequested_diversity(requests, generated, reference, min_reference=2)
  assert loose.num_requests == 3
  assert loose.tv == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
  # min_reference 1: G qualifies by size but its real a0 never varies (row 1 only).
  assert metrics.unrequested_diversity(requests, generated, reference,
                                       min_reference=1).num_requests == 3
  none = metrics.unrequested_diversity(requests, generated, reference, min_reference=8)
  assert none.num_requests == 0 and np.isnan(none.tv) and np.isnan(none.marginal_tv)
  with pytest.raises(ValueError, match=r"\(n, a\)"):
    metrics.unrequested_diversity(requests, generated[:, :2], reference)


def _brute_force_diversity(requests, generated, reference, min_reference):
  """The definition, one request at a time, with dictionaries of counts."""
  def key(row, columns):
    return tuple(int(row[j]) for j in columns)

  def tv(first, second):
    support = set(first) | set(second)
    return 0.5 * sum(abs(first.get(s, 0) / sum(first.values())
                         - second.get(s, 0) / sum(second.values())) for s in support)

  def satisfies(row, request):
    return all(np.isnan(value) or row[j] == value for j, value in enumerate(request))

  distinct = {tuple(-1 if np.isnan(v) else int(v) for v in request) for request in requests}
  tvs = []
  for code in distinct:
    request = np.array([np.nan if v < 0 else v for v in code])
    open_columns = [j for j, v in enumerate(code) if v < 0]
    real = [row for row in reference if satisfies(row, request)]
    mine = [image for asked, image in zip(requests, generated)
            if np.array_equal(asked, request, equal_nan=True) and satisfies(image, request)]
    if not open_columns or len(real) < min_reference or not mine:
      continue
    if len({key(row, open_columns) for row in real}) < 2:
      continue  # nothing varies among the real images
    counts = [{}, {}]
    for count, rows in zip(counts, (mine, real)):
      for row in rows:
        count[key(row, open_columns)] = count.get(key(row, open_columns), 0) + 1
    tvs.append(tv(*counts))
  return np.mean(tvs), len(tvs)


def test_unrequested_diversity_matches_the_definition_on_random_data():
  rng = np.random.default_rng(3)
  reference = rng.integers(3, size=(400, 3))
  requests = metrics.random_requests(
      [data.AttributeSpec(f"a{j}", tuple("012")) for j in range(3)], 600, (1, 2),
      seed=4)
  generated = np.where(rng.random((600, 3)) < 0.8, np.nan_to_num(requests, nan=0),
                       rng.integers(3, size=(600, 3)))
  generated = np.where(np.isnan(requests), rng.integers(3, size=(600, 3)), generated)
  diversity = metrics.unrequested_diversity(requests, generated, reference, 30)
  expected_tv, expected_count = _brute_force_diversity(requests, generated, reference, 30)
  assert diversity.num_requests == expected_count > 10
  assert diversity.tv == pytest.approx(expected_tv, rel=1e-12)


def test_a_perfect_sampler_scores_the_sampling_floor():
  """Generated attributes drawn from the real conditional itself: their TV is the
  floor's quantity, so over many seeds the two agree within a few standard errors;
  with many images the floor goes to 0."""
  reference = data.attributes_from_labels(
      "digits", np.random.default_rng(5).integers(10, size=500))
  rng = np.random.default_rng(6)

  def perfect(num_images):
    requests, generated = [], []
    for j in (1, 2):  # even=v, at_least_5=v: the digit stays open
      for value in (0, 1):
        rows = reference[reference[:, j] == value]
        generated.append(rows[rng.integers(len(rows), size=num_images)])
        request = np.full((num_images, 3), np.nan, np.float32)
        request[:, j] = value
        requests.append(request)
    return np.concatenate(requests), np.concatenate(generated)

  gaps = []
  for seed in range(60):
    diversity = metrics.unrequested_diversity(*perfect(60), reference, seed=seed)
    assert diversity.num_requests == 4 and 0.05 < diversity.tv_floor < 0.3
    gaps.append(diversity.tv - diversity.tv_floor)
  assert abs(np.mean(gaps)) < 4 * np.std(gaps) / np.sqrt(len(gaps)) + 1e-3
  assert metrics.unrequested_diversity(*perfect(20000), reference).tv_floor < 0.02


def test_digit_attributes_follow_the_predicted_digit():
  params = jax.jit(classifier_fd.init_params, static_argnums=1)(
      jax.random.key(0, impl="rbg"), 16)
  images = np.random.default_rng(0).uniform(size=(20, 28, 28, 1)).astype(np.float32)
  attributes = metrics.predict_digit_attributes(params, images)
  digits = classifier_fd.predict_digits(params, images)
  np.testing.assert_array_equal(attributes,
                                data.attributes_from_labels("digits", digits))


# ---------------------------------------------------------------- attribute classifier


def _synthetic(num_examples, seed):
  """16x16x3 images with three visible attributes: red level (2 values), the column
  of a green square (3 values), bright top or bottom half of blue (2 values)."""
  rng = np.random.default_rng(seed)
  attributes = np.stack([rng.integers(2, size=num_examples),
                         rng.integers(3, size=num_examples),
                         rng.integers(2, size=num_examples)], axis=1)
  images = rng.uniform(0, 0.15, size=(num_examples, 16, 16, 3))
  for i, (red, column, half) in enumerate(attributes):
    images[i, :, :, 0] += 0.2 + 0.6 * red
    row = rng.integers(0, 11)
    images[i, row:row + 5, 5 * column:5 * column + 5, 1] += 0.8
    images[i, 8 * half:8 * half + 8, :, 2] += 0.8
  return np.clip(images, 0, 1).astype(np.float32), attributes.astype(np.float32)


def test_attribute_loss_is_the_cross_entropy_of_observed_entries():
  model = attribute_classifier.make_classifier((2, 3), widths=(4,), hidden=8)
  images = np.random.default_rng(1).uniform(size=(3, 8, 8, 1)).astype(np.float32)
  params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), images)["params"]
  attributes = np.array([[1, 2], [0, np.nan], [np.nan, 0]], np.float32)

  @jax.jit
  def loss_and_logits(params):
    return (attribute_classifier.attribute_loss(model, params, images, attributes),
            model.apply({"params": params}, images))

  (loss, accuracy), logits = loss_and_logits(params)
  logits = np.asarray(logits, np.float64)
  blocks = [logits[:, :2], logits[:, 2:]]
  terms, hits = [], [[], []]
  for i in range(3):
    for j in range(2):
      if not np.isnan(attributes[i, j]):
        log_probs = blocks[j][i] - np.log(np.sum(np.exp(blocks[j][i])))
        terms.append(-log_probs[int(attributes[i, j])])
        hits[j].append(np.argmax(blocks[j][i]) == attributes[i, j])
  assert float(loss) == pytest.approx(np.mean(terms), rel=1e-5)
  np.testing.assert_allclose(accuracy, [np.mean(hits[0]), np.mean(hits[1])])


def test_attribute_classifier_learns_a_separable_task_on_the_loop(tmp_path):
  """`classifier.make_attribute_train_step` on the shared loop, 30% of the labels
  hidden (left out of the loss), learns three visible attributes."""
  train_images, train_attributes = _synthetic(1024, seed=0)
  test_images, test_attributes = _synthetic(300, seed=1)
  hidden = data.hidden_attribute_mask(1024, 3, 0.3, seed=0)
  labels = data.hide_attributes(train_attributes, hidden)
  dataset = data.ImageDataset(name="synthetic", split="train", image_shape=(16, 16, 3),
                              num_examples=1024, binarized=False,
                              read_fn=lambda indices: (train_images[indices],
                                                       labels[indices]))
  model = attribute_classifier.make_classifier((2, 3, 2), widths=(8, 16), hidden=32)
  optimizer = optax.adam(3e-3)
  params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), train_images[:1])["params"]
  task = loop.Task(
      init_state=classifier.ClassifierState(params, optimizer.init(params)),
      train_step=classifier.make_attribute_train_step(model, optimizer),
      shown_metrics=("loss", "accuracy"),
      prepare_batch=lambda indices, images, attributes: {"image": images,
                                                         "attributes": attributes})
  options = loop.LoopOptions(num_epochs=3, batch_size=64, log_every_steps=16,
                             progress_bar=False)
  state = loop.run(workdir=str(tmp_path / "run"), options=options, task=task,
                   train_dataset=dataset)
  params = jax.device_get(state.params)
  accuracy = attribute_classifier.attribute_accuracy(model, params, test_images,
                                                     test_attributes)
  assert np.all(accuracy > 0.95), accuracy
  path = str(tmp_path / "attributes.msgpack")
  attribute_classifier.save_attribute_classifier(path, model, params)
  loaded_model, loaded_params = attribute_classifier.load_attribute_classifier(path)
  assert loaded_model == model
  np.testing.assert_array_equal(
      attribute_classifier.predict_attributes(loaded_model, loaded_params, test_images),
      attribute_classifier.predict_attributes(model, params, test_images))
