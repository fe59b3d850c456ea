"""Condition violation rate of conditional samples (paper, section 1 and 6).

Images generated for a request of attributes (NaN = unspecified) are classified by an
attribute classifier; a requested attribute is violated when the predicted value
differs from the requested one. `violation_rates` gives the share per attribute (over
the samples that requested it), their mean, and the share of samples with at least one
violation. `random_requests` draws the requests: one attribute, or random subsets of
2-3, with values copied from real examples (so that dependent attributes, like a
digit and its parity, are never asked for in impossible combinations).

The metric has the classifier's own error in it: report the classifier's accuracy on
real test images next to it (`real_attributes`). `violation_metrics` runs
the whole metric for any conditional sampler, judged by an `AttributePredictor`
(`load_attribute_predictor`).

A low violation rate says nothing of what was not requested: a sampler that draws one
fixed "young man" for "Male=1, Young=1" has none. `unrequested_diversity` measures that
(the point of the paper's Table 3): for each distinct request, the images generated for
it that satisfy it and the real images that satisfy it, both read by the same
classifier, and the total variation distance between the two distributions of the
attributes the request leaves unspecified.
"""

from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from tripjax import data
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd

DIGIT_DATASETS = ("digits", "mnist")  # judged by the FD digit classifier
# The fewest real images that must satisfy a request for its diversity to be scored.
MIN_REFERENCE = 30


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


class UnrequestedDiversity(NamedTuple):
  """How the attributes a request leaves open are spread, generated against real.

  Attributes:
    tv: mean over the qualifying requests of the total variation distance between the
      joint distributions of the unrequested attributes (0: the same spread as the
      real images; 1: disjoint); NaN when no request qualifies.
    marginal_tv: the same with, per request, the mean over the unrequested attributes
      of the TV between their marginal distributions (less biased upward by few
      images when many attributes are left open, as on CelebA).
    num_requests: the qualifying requests: distinct requests that leave at least one
      attribute open, satisfied by at least `min_reference` real images whose open
      attributes are not all alike (on digits `digit=3` fixes even and at_least_5:
      nothing is left to vary) and by at least one generated image.
    num_unsatisfied: distinct requests with enough real images but no generated
      image that satisfies them (left out of the means; counted by the violation
      rate).
    tv_floor: the `tv` of a perfect sampler with as many satisfying images per
      request: |G| rows drawn from R itself (with replacement, seeded), averaged
      over draws. Empirical TVs are biased upward by few images; a `tv` near this
      floor is as close to the real spread as the sample sizes can show.
  """
  tv: float
  marginal_tv: float
  num_requests: int
  num_unsatisfied: int
  tv_floor: float = float("nan")


def total_variation(first, second) -> float:
  """TV distance between the empirical distributions of two sets of discrete rows.

  Args:
    first: (n, k) values (n >= 1).
    second: (m, k) values (m >= 1).

  Returns:
    1/2 sum over the distinct rows r of |share of r in first - share of r in second|.
  """
  first, second = np.asarray(first), np.asarray(second)
  if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1] \
      or not len(first) or not len(second):
    raise ValueError(f"first {first.shape} and second {second.shape} must be non-empty "
                     "(n, k) and (m, k).")
  _, codes = np.unique(np.concatenate([first, second]), axis=0, return_inverse=True)
  codes = codes.reshape(-1)
  num_codes = int(codes.max()) + 1
  first_share = np.bincount(codes[:len(first)], minlength=num_codes) / len(first)
  second_share = np.bincount(codes[len(first):], minlength=num_codes) / len(second)
  return float(0.5 * np.sum(np.abs(first_share - second_share)))


def unrequested_diversity(requests, generated, reference,
                          min_reference: int = MIN_REFERENCE, floor_draws: int = 10,
                          seed: int = 0) -> UnrequestedDiversity:
  """The diversity of what is not requested, generated against real.

  For each distinct request r that leaves attributes U open: G = the generated images
  made for r whose (predicted) attributes satisfy r; R = the real images whose
  (predicted) attributes satisfy r. TV(r) is the total variation distance between the
  distributions of the attributes U over G and over R (jointly; and per attribute,
  averaged, for `marginal_tv`). Averaged over the requests with |R| >= `min_reference`
  and |G| >= 1, each request counting once; a request under which the real images'
  open attributes never vary (nothing to be diverse about) is left out.

  Args:
    requests: (n, a) the request of each generated image, NaN = unspecified.
    generated: (n, a) the attributes the classifier reads on each generated image.
    reference: (N, a) the attributes the same classifier reads on real images.
    min_reference: the fewest real images a request needs to be scored.
    floor_draws: draws per request of the sampling floor (`tv_floor`).
    seed: their seed (numpy PCG64).

  Returns:
    UnrequestedDiversity.
  """
  requests = np.asarray(requests, np.float64)
  generated = np.asarray(generated, np.float64)
  reference = np.asarray(reference, np.float64)
  if requests.shape != generated.shape or requests.ndim != 2 \
      or reference.ndim != 2 or reference.shape[1] != requests.shape[1]:
    raise ValueError(f"requests {requests.shape} and generated {generated.shape} must "
                     f"have shape (n, a) and reference {reference.shape} (N, a).")
  asked = ~np.isnan(requests)
  # Distinct requests, with -1 (never a value) standing for "unspecified".
  distinct, which = np.unique(np.where(asked, requests, -1.0), axis=0,
                              return_inverse=True)
  which = which.reshape(-1)
  tvs, marginal_tvs, floors, num_unsatisfied = [], [], [], 0
  rng = np.random.default_rng(seed)
  for index, request in enumerate(distinct):
    given = request >= 0
    if given.all():
      continue  # nothing left open
    real = reference[np.all(reference[:, given] == request[given], axis=1)]
    if len(real) < min_reference or np.all(real[:, ~given] == real[0, ~given]):
      continue
    mine = generated[which == index]
    mine = mine[np.all(mine[:, given] == request[given], axis=1)]
    if not len(mine):
      num_unsatisfied += 1
      continue
    tvs.append(total_variation(mine[:, ~given], real[:, ~given]))
    marginal_tvs.append(np.mean([total_variation(mine[:, [j]], real[:, [j]])
                                 for j in np.flatnonzero(~given)]))
    floors.append(np.mean([
        total_variation(real[rng.integers(len(real), size=len(mine))][:, ~given],
                        real[:, ~given]) for _ in range(floor_draws)]))

  def mean(values):
    return float(np.mean(values)) if values else float("nan")

  return UnrequestedDiversity(mean(tvs), mean(marginal_tvs), len(tvs), num_unsatisfied,
                              mean(floors))


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


class RealAttributes(NamedTuple):
  """What the classifier makes of the real images of a split.

  Attributes:
    truth: (N, a) their labelled attributes.
    predicted: (N, a) the attributes the classifier reads on them.
    accuracy: {"classifier_accuracy_<attribute>", "classifier_accuracy" (the mean)}.
  """
  truth: np.ndarray
  predicted: np.ndarray
  accuracy: dict[str, float]


def real_attributes(predictor: AttributePredictor, dataset: data.ImageDataset,
                    batch_size: int) -> RealAttributes:
  """The attributes of the real images of `dataset`, true and read by the predictor,
  and its accuracy on them (the metric's own error). Reads the images batch by batch."""
  truth, predicted = predictions_on(dataset, predictor.predict, batch_size)
  return RealAttributes(truth, predicted, accuracies(
      truth, predicted, data.attribute_specs(dataset.name), "classifier_accuracy"))


# (key, requests (n, a) with NaN = unspecified) -> one image per request (n, H, W, C).
ConditionalSampleFn = Callable[[jax.Array, np.ndarray], np.ndarray]


def violation_metrics(sample_fn: ConditionalSampleFn, predictor: AttributePredictor,
                      requests: Mapping[str, np.ndarray], key: jax.Array,
                      specs: Sequence[data.AttributeSpec],
                      reference_predicted: Optional[np.ndarray] = None,
                      min_reference: int = MIN_REFERENCE) -> dict[str, float]:
  """Condition violation rates of one image per request (`violation_rates`), and the
  diversity of the unrequested attributes (`unrequested_diversity`).

  Args:
    sample_fn: the conditional sampler.
    predictor: the classifier that judges the images.
    requests: {kind: (n, a) requests}, e.g. {"single": ..., "subset": ...}.
    key: the sampler's key; kind i gets `fold_in(key, i)`.
    specs: the attributes.
    reference_predicted: (N, a) the attributes `predictor` reads on real images (the
      diversity's reference); None: no diversity.
    min_reference: the fewest real images a request needs for its diversity.

  Returns:
    For each kind of `requests`: f"violation_{kind}_mean" (mean over the attributes),
    f"violation_{kind}_any" (share of images that violate at least one requested
    attribute) and f"violation_{kind}_{attribute}"; with `reference_predicted` also
    f"diversity_{kind}_tv", f"diversity_{kind}_marginal_tv",
    f"diversity_{kind}_requests" (how many requests qualify),
    f"diversity_{kind}_unsatisfied" and f"diversity_{kind}_tv_floor"
    (`UnrequestedDiversity`).
  """
  results: dict[str, float] = {}
  for index, (kind, kind_requests) in enumerate(requests.items()):
    images = sample_fn(jax.random.fold_in(key, index), kind_requests)
    if len(images) != len(kind_requests):
      raise ValueError(f"the sampler gave {len(images)} images for "
                       f"{len(kind_requests)} {kind} requests.")
    predicted = predictor.predict(images)
    rates = violation_rates(predicted, kind_requests)
    results[f"violation_{kind}_mean"] = rates.mean
    results[f"violation_{kind}_any"] = rates.any_violation
    for spec, rate in zip(specs, rates.per_attribute):
      results[f"violation_{kind}_{spec.name}"] = float(rate)
    if reference_predicted is not None:
      diversity = unrequested_diversity(kind_requests, predicted, reference_predicted,
                                        min_reference)
      results[f"diversity_{kind}_tv"] = diversity.tv
      results[f"diversity_{kind}_marginal_tv"] = diversity.marginal_tv
      results[f"diversity_{kind}_requests"] = diversity.num_requests
      results[f"diversity_{kind}_unsatisfied"] = diversity.num_unsatisfied
      results[f"diversity_{kind}_tv_floor"] = diversity.tv_floor
  return results
