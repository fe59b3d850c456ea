"""Condition violation rate of conditional samples (paper, section 1 and 6).

Images generated for a request of attributes (NaN = unspecified) are classified by an
attribute classifier; a requested attribute is violated when the predicted value
differs from the requested one. `violation_rates` gives the share per attribute (over
the samples that requested it), their mean, and the share of samples with at least one
violation. `random_requests` draws the requests: one attribute, or random subsets of
2-3, with values copied from real examples (so that dependent attributes, like a
digit and its parity, are never asked for in impossible combinations).

The metric has the classifier's own error in it: report the classifier's accuracy on
real test images next to it (`attribute_classifier.attribute_accuracy`).
"""

from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from tripjax import data
from tripjax.metrics import classifier_fd


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
