"""Sample-quality metrics: Fréchet distance, FID (InceptionV3 port), classifier FD.

Only the NumPy Fréchet maths is imported eagerly; the Flax feature extractors
live in `tripjax.metrics.inception` and `tripjax.metrics.classifier_fd`.
"""

from tripjax.metrics.frechet import frechet_distance
from tripjax.metrics.frechet import frechet_distance_from_features
from tripjax.metrics.frechet import gaussian_stats
from tripjax.metrics.frechet import trace_sqrt_product

__all__ = [
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "trace_sqrt_product",
]
