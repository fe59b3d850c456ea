"""Do generated digits read as digits? Classifier FD, confident share, class balance.

Three numbers of one pass of the digit classifier (`classifier_fd`) over the samples:

* classifier FD: Fréchet distance of the samples' penultimate features to the
  reference digits' (lower is better);
* confident share: the share of samples whose most probable class has probability
  >= `threshold` (0.9): strokes and blobs spread their probability;
* class TV: total variation between the histograms of the predicted classes of the
  samples and of the reference digits, so that confident samples of a few classes
  (mode collapse) cannot pass for quality.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tripjax.metrics import classifier_fd
from tripjax.metrics import condition_violation
from tripjax.metrics import frechet
from tripjax.metrics import sampling

CONFIDENCE = 0.9


class DigitQuality(NamedTuple):
  """Scores of a set of digit images against reference digits.

  Attributes:
    classifier_fd: Fréchet distance in the classifier's features.
    confident_share: share of images whose top class probability >= the threshold.
    class_tv: TV between the predicted-class histograms of the images and the reference.
  """
  classifier_fd: float
  confident_share: float
  class_tv: float


def confident_share(probabilities, threshold: float = CONFIDENCE) -> float:
  """Share of rows of probabilities (N, C) whose largest entry is >= threshold."""
  probabilities = np.asarray(probabilities)
  if probabilities.ndim != 2 or not len(probabilities):
    raise ValueError(f"probabilities must be a non-empty (N, C) array, got shape "
                     f"{probabilities.shape}.")
  return float(np.mean(probabilities.max(axis=-1) >= threshold))


def class_tv(predictions, reference_predictions) -> float:
  """TV between the class histograms of two label vectors (N,) and (M,)."""
  return condition_violation.total_variation(np.asarray(predictions).reshape(-1, 1),
                                             np.asarray(reference_predictions).reshape(-1, 1))


def digit_quality(classifier_params, images, reference_images, *,
                  threshold: float = CONFIDENCE, batch_size: int = 500) -> DigitQuality:
  """The three scores of images (N, 28, 28, 1) in [0, 1] against reference digits.

  Args:
    classifier_params: the digit classifier's params (`classifier_fd.load_classifier`).
    images: (N, 28, 28, 1) in [0, 1], N >= 2.
    reference_images: (M, 28, 28, 1) in [0, 1], M >= 2.
    threshold: the probability a confident image's top class reaches.
    batch_size: the classifier's batch size.
  """
  features, probabilities = classifier_fd.features_and_probabilities(
      classifier_params, images, batch_size)
  reference, reference_probabilities = classifier_fd.features_and_probabilities(
      classifier_params, reference_images, batch_size)
  return DigitQuality(
      classifier_fd=frechet.frechet_distance_from_features(features, reference),
      confident_share=confident_share(probabilities, threshold),
      class_tv=class_tv(probabilities.argmax(-1), reference_probabilities.argmax(-1)))


def digit_quality_of_sampler(sample_fn: sampling.SampleFn, reference_images,
                             classifier_params, *, num_samples: int = 5_000,
                             batch_size: int = 500, seed: int = 0,
                             threshold: float = CONFIDENCE) -> DigitQuality:
  """`digit_quality` of `num_samples` samples of `sample_fn` (key, n) -> (n, 28, 28, 1).

  The samples are `sampling.draw_samples`'s, so the FD equals
  `sampling.classifier_fd_from_sampler`'s with the same seed and batch size.
  """
  images = sampling.draw_samples(sample_fn, num_samples=num_samples,
                                 batch_size=batch_size, seed=seed)
  return digit_quality(classifier_params, images, reference_images, threshold=threshold,
                       batch_size=batch_size)
