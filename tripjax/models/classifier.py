"""Small CNN classifiers: digits (its penultimate layer is a feature space for FD) and
image attributes (the condition-violation metric of the conditional experiments)."""

from typing import Sequence, Tuple

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


class AttributeClassifier(nn.Module):
  """(N, H, W, C) images in [0, 1] → (N, Σ_j num_values[j]) logits, attribute by attribute.

  Stride-2 convs 4×4 (`widths`) with ReLU, halving H and W each → flatten →
  dense (hidden) → ReLU → dense (Σ_j num_values[j]); the logits of attribute j are
  the j-th block of num_values[j] (a softmax per attribute).
  """
  num_values: Sequence[int]
  widths: Sequence[int] = (32, 64, 128, 128)
  hidden: int = 256

  @nn.compact
  def __call__(self, images) -> jnp.ndarray:
    x = 2.0 * images - 1.0
    for layer, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (4, 4), strides=(2, 2), name=f"conv{layer}")(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    return nn.Dense(sum(self.num_values), name="logits")(x)
