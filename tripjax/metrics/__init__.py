"""Sample-quality metrics: Fréchet distance, FID (InceptionV3 port), classifier FD.

* `frechet`: float64 NumPy Fréchet distance between feature Gaussians.
* `inception`: Flax port of pytorch-fid's InceptionV3 (weights from a file;
  `convert_inception` converts the reference .pth).
* `classifier_fd`: offline Fréchet distance in a small digit classifier's features.
* `condition_violation`: share of conditional samples whose classified attributes
  contradict the requested ones, and the diversity of the attributes a request
  leaves open (total variation against real images); `attribute_classifier` is the
  classifier's loss, predictions and weight file (trained by `tripjax.training.classifier`).
"""

from tripjax.metrics.classifier_fd import classifier_features
from tripjax.metrics.classifier_fd import classifier_frechet_distance
from tripjax.metrics.classifier_fd import load_classifier
from tripjax.metrics.condition_violation import UnrequestedDiversity
from tripjax.metrics.condition_violation import ViolationRates
from tripjax.metrics.condition_violation import predict_digit_attributes
from tripjax.metrics.condition_violation import random_requests
from tripjax.metrics.condition_violation import total_variation
from tripjax.metrics.condition_violation import unrequested_diversity
from tripjax.metrics.condition_violation import violation_rates
from tripjax.metrics.frechet import frechet_distance
from tripjax.metrics.frechet import frechet_distance_from_features
from tripjax.metrics.frechet import gaussian_stats
from tripjax.metrics.frechet import trace_sqrt_product
from tripjax.metrics.inception import inception_features
from tripjax.metrics.inception import load_inception_variables

__all__ = [
    "UnrequestedDiversity",
    "ViolationRates",
    "classifier_features",
    "classifier_frechet_distance",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "inception_features",
    "load_classifier",
    "load_inception_variables",
    "predict_digit_attributes",
    "random_requests",
    "total_variation",
    "trace_sqrt_product",
    "unrequested_diversity",
    "violation_rates",
]
