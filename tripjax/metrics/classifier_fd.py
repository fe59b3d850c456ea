"""Classifier FD: Fréchet distance in a small digit classifier's feature space.

An offline stand-in for FID on 28×28 digits: `DigitClassifier`
(tripjax/models/classifier.py) is trained on the digits train split, and two
image sets are compared by `frechet_distance` of Gaussians fitted to their
penultimate-layer features (like FID uses Inception's pool3). Numbers are
comparable only between runs that use the same cached classifier (the same config,
configs/digits_classifier.py); `python -m train.train_classifier --workdir
runs/classifier` trains it on the shared loop (`tripjax.training.classifier`) and
caches it.
"""

import json
import os
from typing import Any, Dict, Mapping, Tuple

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tripjax.metrics import frechet
from tripjax.metrics import images as images_lib
from tripjax.models.classifier import DigitClassifier

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
WEIGHTS_FILENAME = "classifier.msgpack"
METADATA_FILENAME = "classifier.json"
WEIGHTS_FORMAT = "tripjax-digit-classifier-v1"
# The stock config that trains it (`python -m train.train_classifier`'s default).
STOCK_CONFIG = "digits_classifier"

Params = Mapping[str, Any]


def _model(params: Params) -> DigitClassifier:
  """The module matching `params` (feature_dim read from its shapes)."""
  return DigitClassifier(num_classes=NUM_CLASSES,
                         feature_dim=params["features"]["kernel"].shape[-1])


def init_params(rng: jax.Array, feature_dim: int) -> Params:
  """Random classifier params for (N, 28, 28, 1) inputs."""
  model = DigitClassifier(num_classes=NUM_CLASSES, feature_dim=feature_dim)
  return model.init(rng, jnp.zeros((1,) + IMAGE_SHAPE, jnp.float32))["params"]


def cross_entropy_loss(params: Params, images, labels) -> Tuple[jax.Array, jax.Array]:
  """Mean softmax cross-entropy and accuracy; images (B, 28, 28, 1), labels (B,) int."""
  logits, _ = _model(params).apply({"params": params}, images)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return loss, accuracy


@jax.jit
def _logits_and_features(params, images):
  return _model(params).apply({"params": params}, images)


def _batched(params, images, batch_size: int):
  """(logits (N, 10), features (N, feature_dim)) as NumPy, fixed-size padded batches."""
  images = images_lib.as_unit_images(images, channels=(1,), spatial_shape=IMAGE_SHAPE[:2])
  batch_size = min(batch_size, images.shape[0])
  logits, features = [], []
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    valid = batch.shape[0]
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + IMAGE_SHAPE,
                                              np.float32)])
    batch_logits, batch_features = _logits_and_features(params, batch)
    logits.append(np.asarray(batch_logits)[:valid])
    features.append(np.asarray(batch_features)[:valid])
  return np.concatenate(logits), np.concatenate(features)


def classifier_features(params: Params, images, batch_size: int = 500) -> np.ndarray:
  """Penultimate features (N, feature_dim) float32 of images (N, 28, 28, 1) in [0, 1].

  Raises:
    ValueError: wrong shape or values outside [0, 1] (uint8 is accepted).
  """
  return _batched(params, images, batch_size)[1]


def predict_digits(params: Params, images, batch_size: int = 500) -> np.ndarray:
  """Predicted digits (N,) int32 of images (N, 28, 28, 1) in [0, 1]."""
  return np.argmax(_batched(params, images, batch_size)[0], -1).astype(np.int32)


def class_probabilities(params: Params, images, batch_size: int = 500) -> np.ndarray:
  """Class probabilities (N, 10) float32 (softmax of the logits) of images in [0, 1]."""
  return features_and_probabilities(params, images, batch_size)[1]


def features_and_probabilities(params: Params, images, batch_size: int = 500
                               ) -> Tuple[np.ndarray, np.ndarray]:
  """`classifier_features` (N, feature_dim) and `class_probabilities` (N, 10) of images
  (N, 28, 28, 1) in [0, 1], from one pass of the classifier."""
  logits, features = _batched(params, images, batch_size)
  return features, np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))


def classifier_accuracy(params: Params, images, labels, batch_size: int = 500) -> float:
  """Top-1 accuracy on images (N, 28, 28, 1) with labels (N,)."""
  return float(np.mean(predict_digits(params, images, batch_size) == np.asarray(labels)))


def classifier_stats(params: Params, images, batch_size: int = 500):
  """(mean (f,), cov (f, f)) float64 of the classifier features of images (N, 28, 28, 1)."""
  return frechet.gaussian_stats(classifier_features(params, images, batch_size))


def classifier_frechet_distance(params: Params, images1, images2,
                                batch_size: int = 500) -> float:
  """Classifier FD between two image sets (N₁, 28, 28, 1), (N₂, 28, 28, 1) in [0, 1]."""
  return frechet.frechet_distance(*classifier_stats(params, images1, batch_size),
                                  *classifier_stats(params, images2, batch_size))


# ----------------------------------------------------------------------------
# Cache in a workdir: classifier.msgpack (params) + classifier.json (metadata).
# ----------------------------------------------------------------------------


def save_classifier(workdir: str, params: Params, metadata: Dict[str, Any]) -> None:
  """Writes params and metadata (must include "config") into `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  payload = {"format": WEIGHTS_FORMAT, "params": jax.tree_util.tree_map(np.asarray, params)}
  with open(os.path.join(workdir, WEIGHTS_FILENAME), "wb") as f:
    f.write(serialization.msgpack_serialize(payload))
  with open(os.path.join(workdir, METADATA_FILENAME), "w") as f:
    json.dump(metadata, f, indent=2, sort_keys=True)


def load_classifier(workdir: str) -> Tuple[Params, Dict[str, Any]]:
  """Reads what `save_classifier` wrote: (params, metadata).

  Raises:
    FileNotFoundError: nothing cached (the message gives the training command).
    ValueError: the weight file has the wrong format.
  """
  weights_path = os.path.join(workdir, WEIGHTS_FILENAME)
  metadata_path = os.path.join(workdir, METADATA_FILENAME)
  if not (os.path.exists(weights_path) and os.path.exists(metadata_path)):
    raise FileNotFoundError(
        f"no cached FD classifier in {workdir!r}; train it with "
        f"`python -m train.train_classifier --workdir {workdir}`")
  with open(weights_path, "rb") as f:
    try:
      payload = serialization.msgpack_restore(f.read())
    except Exception as error:  # msgpack raises several unrelated types.
      raise ValueError(f"{weights_path}: unreadable classifier weights ({error})") from error
  if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
    raise ValueError(f"{weights_path}: not a tripjax digit-classifier weight file")
  with open(metadata_path) as f:
    metadata = json.load(f)
  params = jax.tree_util.tree_map(jnp.asarray, payload["params"])
  return params, metadata
