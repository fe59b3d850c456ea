"""Condition violation rate of conditional samples (paper, section 1 and 6).

Images generated for a request of attributes (NaN = unspecified) are classified by an
attribute classifier; a requested attribute is violated when the predicted value
differs from the requested one. `violation_rates` gives the share per attribute (over
the samples that requested it), their mean, and the share of samples with at least one
violation. `random_requests` draws the requests: one attribute, or random subsets of
2-3, with values copied from real examples (so that dependent attributes, like a
digit and its parity, are never asked for in impossible combinations).

The metric has the classifier's own error in it: report the classifier's accuracy on
real test images next to it (`real_attributes_and_accuracy`). `violation_metrics` runs
the whole metric for any conditional sampler, judged by an `AttributePredictor`
(`load_attribute_predictor`).
"""

from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from tripjax import data
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd

DIGIT_DATASETS = ("digits", "mnist")  # judged by the FD digit classifier


class ViolationRates(NamedTuple):
  """Condition violations of a set of samples.

  Attributes:
    per_attribute: (a,) share of violations among the samples that requested the
      attribute; NaN for an attribute never requested.
    num_requested: (a,) how many samples requested each attribute.
    mean: mean of `per_attribute` over the requested attributes.
    any_violation: share of the samples (with at least one request) that violate at
      least one of their requested attributes.
  """
  per_attribute: np.ndarray
  num_requested: np.ndarray
  mean: float
  any_violation: float


def violation_rates(predicted, requested) -> ViolationRates:
  """Condition violation rates.

  Args:
    predicted: (n, a) predicted attribute values of the generated samples.
    requested: (n, a) requested values, NaN where an attribute was not requested.

  Returns:
    ViolationRates.
  """
  predicted = np.asarray(predicted, np.float64)
  requested = np.asarray(requested, np.float64)
  if predicted.shape != requested.shape or predicted.ndim != 2:
    raise ValueError(f"predicted {predicted.shape} and requested {requested.shape} must "
                     "both have shape (n, a).")
  asked = ~np.isnan(requested)
  violated = asked & (predicted != requested)
  num_requested = asked.sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    per_attribute = np.where(num_requested > 0, violated.sum(axis=0) / num_requested,
                             np.nan)
  any_asked = asked.any(axis=1)
  mean = float(np.nanmean(per_attribute)) if np.any(num_requested) else float("nan")
  any_violation = (float(violated.any(axis=1)[any_asked].mean()) if any_asked.any()
                   else float("nan"))
  return ViolationRates(per_attribute, num_requested, mean, any_violation)


def random_requests(specs: Sequence[data.AttributeSpec], num_requests: int,
                    subset_sizes: Sequence[int], seed: int,
                    reference_attributes: Optional[np.ndarray] = None) -> np.ndarray:
  """Random attribute requests of random subsets of attributes, seeded.

  Each request picks a subset size uniformly from `subset_sizes`, then that many
  distinct attributes uniformly. Their values are those of a uniformly drawn row of
  `reference_attributes` (real examples: every request is then satisfiable), or
  uniform over each attribute's values when no reference is given.

  Args:
    specs: the dataset's attributes.
    num_requests: n.
    subset_sizes: e.g. (1,) or (2, 3); each between 1 and a.
    seed: non-negative int (numpy PCG64).
    reference_attributes: optional (N, a) attributes of real examples, no NaN.

  Returns:
    (n, a) float32 requests, NaN where unspecified.
  """
  num_attributes = len(specs)
  subset_sizes = tuple(int(size) for size in subset_sizes)
  if not subset_sizes or any(not 1 <= size <= num_attributes for size in subset_sizes):
    raise ValueError(f"subset_sizes must be sizes in [1, {num_attributes}], got "
                     f"{subset_sizes}.")
  rng = np.random.default_rng(seed)
  if reference_attributes is None:
    values = np.stack([rng.integers(spec.num_values, size=num_requests)
                       for spec in specs], axis=1).astype(np.float32)
  else:
    reference_attributes = np.asarray(reference_attributes, np.float32)
    if reference_attributes.ndim != 2 or reference_attributes.shape[1] != num_attributes \
        or np.isnan(reference_attributes).any():
      raise ValueError(f"reference_attributes must have shape (N, {num_attributes}) "
                       f"without NaN, got {reference_attributes.shape}.")
    values = reference_attributes[rng.integers(len(reference_attributes),
                                               size=num_requests)]
  sizes = rng.choice(subset_sizes, size=num_requests)
  # The `size` attributes with the smallest of a uniform key each: a uniform subset.
  ranks = np.argsort(np.argsort(rng.random((num_requests, num_attributes)), axis=1),
                     axis=1)
  return np.where(ranks < sizes[:, None], values, np.nan).astype(np.float32)


def predict_digit_attributes(classifier_params, images, batch_size: int = 500
                             ) -> np.ndarray:
  """The digit attributes (digit, even, at_least_5) of images (N, 28, 28, 1) from the
  FD digit classifier's predicted digit: (N, 3) float32."""
  digits = classifier_fd.predict_digits(classifier_params, images, batch_size)
  return data.attributes_from_labels("digits", digits)


def predictions_on(dataset: data.ImageDataset,
                   predict: Callable[[np.ndarray], np.ndarray],
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The true and the predicted attributes of a labelled split, read batch by batch.

  Args:
    dataset: a split with labels (`data.attributes_from_labels` gives its attributes).
    predict: images (n, H, W, C) in [0, 1] -> (n, a) predicted value indices.
    batch_size: images read (and predicted) at once.

  Returns:
    (truth (N, a), predicted (N, a)) float32 value indices.
  """
  truths, predictions = [], []
  for batch in data.padded_batches(dataset, batch_size):
    real = batch.mask > 0
    if batch.labels is None:
      raise ValueError(f"{dataset.name} {dataset.split} has no labels.")
    truths.append(data.attributes_from_labels(dataset.name, batch.labels[real]))
    predictions.append(np.asarray(predict(batch.images[real]), np.float32))
  return np.concatenate(truths), np.concatenate(predictions)


def accuracies(truth: np.ndarray, predicted: np.ndarray,
               specs: Sequence[data.AttributeSpec], prefix: str) -> dict[str, float]:
  """{f"{prefix}_{attribute}": its accuracy, prefix: the mean over the attributes}
  of predictions (N, a) against the truth (N, a)."""
  correct = predicted == truth
  results = {f"{prefix}_{spec.name}": float(np.mean(correct[:, j]))
             for j, spec in enumerate(specs)}
  results[prefix] = float(np.mean(correct))
  return results


class AttributePredictor(NamedTuple):
  """The classifier behind the condition violation rate.

  Attributes:
    predict: images (N, H, W, C) in [0, 1] -> (N, a) float32 predicted value indices.
    description: what it is, for logs.
  """
  predict: Callable[[np.ndarray], np.ndarray]
  description: str


def load_attribute_predictor(dataset_name: str, workdir: str,
                             batch_size: int) -> AttributePredictor:
  """The attribute classifier of a dataset, trained in `workdir`.

  digits and mnist: the FD digit classifier (`classifier_fd.load_classifier`); its
  predicted digit gives every digit attribute (`predict_digit_attributes`). celeb_a:
  the attribute classifier (`attribute_classifier.load_from_workdir`).

  Raises:
    FileNotFoundError: the classifier is not trained yet (the message gives the
      command that trains it).
  """
  if dataset_name in DIGIT_DATASETS:
    params, metadata = classifier_fd.load_classifier(workdir)
    return AttributePredictor(
        lambda images: predict_digit_attributes(params, images, batch_size),
        f"digit classifier in {workdir} (test accuracy "
        f"{metadata['test_accuracy']:.4f})")
  model, params, _ = attribute_classifier.load_from_workdir(workdir)
  return AttributePredictor(
      lambda images: attribute_classifier.predict_attributes(model, params, images,
                                                             batch_size),
      f"attribute classifier in {workdir}")


def real_attributes_and_accuracy(predictor: AttributePredictor,
                                 dataset: data.ImageDataset, batch_size: int
                                 ) -> tuple[np.ndarray, dict[str, float]]:
  """The attributes of the real images of `dataset` (N, a), and the predictor's
  accuracy on them (the metric's own error): {"classifier_accuracy_<attribute>",
  "classifier_accuracy" (the mean)}. Reads the images batch by batch."""
  truth, predicted = predictions_on(dataset, predictor.predict, batch_size)
  return truth, accuracies(truth, predicted, data.attribute_specs(dataset.name),
                           "classifier_accuracy")


# (key, requests (n, a) with NaN = unspecified) -> one image per request (n, H, W, C).
ConditionalSampleFn = Callable[[jax.Array, np.ndarray], np.ndarray]


def violation_metrics(sample_fn: ConditionalSampleFn, predictor: AttributePredictor,
                      requests: Mapping[str, np.ndarray], key: jax.Array,
                      specs: Sequence[data.AttributeSpec]) -> dict[str, float]:
  """Condition violation rates of one image per request (`violation_rates`).

  Args:
    sample_fn: the conditional sampler.
    predictor: the classifier that judges the images.
    requests: {kind: (n, a) requests}, e.g. {"single": ..., "subset": ...}.
    key: the sampler's key; kind i gets `fold_in(key, i)`.
    specs: the attributes.

  Returns:
    For each kind of `requests`: f"violation_{kind}_mean" (mean over the attributes),
    f"violation_{kind}_any" (share of images that violate at least one requested
    attribute) and f"violation_{kind}_{attribute}".
  """
  results = {}
  for index, (kind, kind_requests) in enumerate(requests.items()):
    images = sample_fn(jax.random.fold_in(key, index), kind_requests)
    rates = violation_rates(predictor.predict(images), kind_requests)
    results[f"violation_{kind}_mean"] = rates.mean
    results[f"violation_{kind}_any"] = rates.any_violation
    for spec, rate in zip(specs, rates.per_attribute):
      results[f"violation_{kind}_{spec.name}"] = float(rate)
  return results
