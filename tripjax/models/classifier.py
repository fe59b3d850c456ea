"""Small CNN digit classifier whose penultimate layer is a feature space for FD."""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp


class DigitClassifier(nn.Module):
  """(N, 28, 28, 1) images in [0, 1] → ((N, num_classes) logits, (N, feature_dim) features).

  conv 3×3 (16) → ReLU → avg-pool 2 → conv 3×3 (32) → ReLU → avg-pool 2 →
  flatten (7·7·32) → dense (feature_dim) → ReLU [features] → dense (num_classes).
  No normalisation or dropout, so `apply` is a pure function of params and images.
  """
  num_classes: int = 10
  feature_dim: int = 64

  @nn.compact
  def __call__(self, images) -> Tuple[jnp.ndarray, jnp.ndarray]:
    x = 2.0 * images - 1.0
    x = nn.relu(nn.Conv(16, (3, 3), name="conv1")(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(32, (3, 3), name="conv2")(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    features = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    logits = nn.Dense(self.num_classes, name="logits")(features)
    return logits, features
