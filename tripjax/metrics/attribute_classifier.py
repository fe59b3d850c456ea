"""Attribute classifier of generated images, for the condition-violation rate.

`AttributeClassifier` (tripjax/models/classifier.py) predicts every attribute of an
image with a softmax per attribute. Here: its loss (`attribute_loss`, missing (NaN)
attributes left out), predictions, accuracy and weight file. It is trained on real
images and their attributes (CelebA's 14 conditions) on the shared loop by
`tripjax.training.classifier` (`python -m train.train_classifier --config
celeba_attribute_classifier --workdir runs/attr_classifier`). On digits the digit
classifier serves instead: its predicted digit gives all three digit attributes
(`tripjax.metrics.condition_violation.predict_digit_attributes`).
"""

import functools
import json
import os
from typing import Any, Mapping, Sequence, cast

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np

from tripjax.metrics import images as images_lib
from tripjax.models.classifier import AttributeClassifier

WEIGHTS_FORMAT = "tripjax-attribute-classifier-v1"
# In a classifier's workdir: the weights and the metadata ({"config": ..., accuracies}).
WEIGHTS_FILENAME = "attribute_classifier.msgpack"
METADATA_FILENAME = "attribute_classifier.json"
# The stock config that trains the CelebA classifier.
STOCK_CONFIG = "celeba_attribute_classifier"

Params = Mapping[str, Any]

DEFAULT_WIDTHS = (32, 64, 128, 128)
DEFAULT_HIDDEN = 256


def make_classifier(num_values: Sequence[int], widths: Sequence[int] = DEFAULT_WIDTHS,
                    hidden: int = DEFAULT_HIDDEN) -> AttributeClassifier:
  """The module for attributes with `num_values` values each."""
  return AttributeClassifier(num_values=tuple(int(k) for k in num_values),
                             widths=tuple(int(w) for w in widths), hidden=int(hidden))


def attribute_log_probs(model: AttributeClassifier, params: Params,
                        images) -> list:
  """Per attribute j, log-probabilities (N, num_values[j]) of its values."""
  # Without `mutable`, apply returns the output alone; flax types it as
  # output | (output, variables).
  logits = cast(jax.Array, model.apply({"params": params}, images))
  splits = np.cumsum(model.num_values)[:-1]
  return [jax.nn.log_softmax(block) for block in jnp.split(logits, splits, axis=-1)]


def attribute_loss(model: AttributeClassifier, params: Params, images, attributes):
  """Mean cross-entropy over the observed entries of attributes (B, a), NaN = missing.

  Returns (loss, per-attribute accuracy (a,) over the observed entries).
  """
  log_probs = attribute_log_probs(model, params, images)
  present = ~jnp.isnan(attributes)
  labels = jnp.where(present, attributes, 0).astype(jnp.int32)
  nll_columns, correct_columns = [], []
  for j, block in enumerate(log_probs):
    nll_columns.append(-jnp.take_along_axis(block, labels[:, j:j + 1], axis=-1)[:, 0])
    correct_columns.append(jnp.argmax(block, axis=-1) == labels[:, j])
  nll, correct = jnp.stack(nll_columns, axis=1), jnp.stack(correct_columns, axis=1)
  count = jnp.maximum(jnp.sum(present), 1)
  loss = jnp.sum(jnp.where(present, nll, 0.0)) / count
  accuracy = (jnp.sum(jnp.where(present, correct, False), axis=0)
              / jnp.maximum(jnp.sum(present, axis=0), 1))
  return loss, accuracy


def _check_attributes(images, attributes, num_values) -> np.ndarray:
  attributes = np.asarray(attributes, np.float32)
  if attributes.shape != (len(images), len(num_values)):
    raise ValueError(f"attributes must have shape ({len(images)}, {len(num_values)}), "
                     f"got {attributes.shape}.")
  return attributes


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(model, params, images):
  return jnp.stack([jnp.argmax(block, axis=-1)
                    for block in attribute_log_probs(model, params, images)], axis=1)


def predict_attributes(model: AttributeClassifier, params: Params, images,
                       batch_size: int = 500) -> np.ndarray:
  """Most probable value of every attribute: (N, a) float32 for images (N, H, W, C)."""
  predictions = []
  for start in range(0, len(images), batch_size):
    batch = images_lib.as_unit_images(images[np.arange(start, min(start + batch_size,
                                                                  len(images)))])
    predictions.append(np.asarray(_predict(model, params, batch)))
  return np.concatenate(predictions).astype(np.float32)


def attribute_accuracy(model: AttributeClassifier, params: Params, images, attributes,
                       batch_size: int = 500) -> np.ndarray:
  """Per-attribute accuracy (a,) on the observed (non-NaN) entries of attributes."""
  attributes = _check_attributes(images, attributes, model.num_values)
  predicted = predict_attributes(model, params, images, batch_size)
  present = ~np.isnan(attributes)
  return np.sum((predicted == attributes) & present, axis=0) / np.maximum(
      np.sum(present, axis=0), 1)


def save_attribute_classifier(path: str, model: AttributeClassifier,
                              params: Params) -> None:
  """Writes the module's settings and params to one msgpack file."""
  payload = {"format": WEIGHTS_FORMAT, "num_values": list(model.num_values),
             "widths": list(model.widths), "hidden": model.hidden,
             "params": jax.tree.map(np.asarray, params)}
  with open(path, "wb") as f:
    f.write(serialization.msgpack_serialize(payload))


def load_attribute_classifier(path: str) -> tuple[AttributeClassifier, Params]:
  """Reads what `save_attribute_classifier` wrote: (model, params)."""
  with open(path, "rb") as f:
    payload = serialization.msgpack_restore(f.read())
  if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
    raise ValueError(f"{path}: not a tripjax attribute-classifier weight file.")
  model = AttributeClassifier(num_values=tuple(payload["num_values"]),
                              widths=tuple(payload["widths"]),
                              hidden=int(payload["hidden"]))
  return model, jax.tree.map(jnp.asarray, payload["params"])


def save_to_workdir(workdir: str, model: AttributeClassifier, params: Params,
                    metadata: Mapping[str, Any]) -> None:
  """Writes a trained classifier and its metadata (with "config") into `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  save_attribute_classifier(os.path.join(workdir, WEIGHTS_FILENAME), model, params)
  with open(os.path.join(workdir, METADATA_FILENAME), "w") as file:
    json.dump(metadata, file, indent=2, sort_keys=True)


def load_from_workdir(workdir: str
                      ) -> tuple[AttributeClassifier, Params, dict[str, Any]]:
  """(model, params, metadata) of the attribute classifier trained in `workdir`.

  Raises:
    FileNotFoundError: none there (the message gives the training command).
  """
  weights_path = os.path.join(workdir, WEIGHTS_FILENAME)
  metadata_path = os.path.join(workdir, METADATA_FILENAME)
  if not (os.path.exists(weights_path) and os.path.exists(metadata_path)):
    raise FileNotFoundError(
        f"no attribute classifier in {workdir!r}; train it with `python -m "
        f"train.train_classifier --config {STOCK_CONFIG} --workdir {workdir}`.")
  model, params = load_attribute_classifier(weights_path)
  with open(metadata_path) as file:
    metadata = json.load(file)
  return model, params, metadata
