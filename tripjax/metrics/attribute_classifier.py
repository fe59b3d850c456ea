"""Attribute classifier of generated images, for the condition-violation rate.

`AttributeClassifier` (tripjax/models/classifier.py) predicts every attribute of an
image with a softmax per attribute; `train_attribute_classifier` trains it on real
images and their attributes (CelebA's 14 conditions), deterministically given
`AttributeClassifierConfig.seed`. Missing (NaN) attributes are left out of the loss.
On digits the existing digit classifier serves instead: its predicted digit gives all
three digit attributes (`tripjax.metrics.condition_violation.predict_digit_attributes`).
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tripjax.metrics import images as images_lib
from tripjax.models.classifier import AttributeClassifier

WEIGHTS_FORMAT = "tripjax-attribute-classifier-v1"

Params = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class AttributeClassifierConfig:
  """Hyper-parameters of the attribute classifier."""
  seed: int = 0
  num_epochs: int = 5
  batch_size: int = 128
  learning_rate: float = 1e-3
  widths: tuple = (32, 64, 128, 128)
  hidden: int = 256


def make_classifier(num_values: Sequence[int],
                    config: AttributeClassifierConfig = AttributeClassifierConfig()
                    ) -> AttributeClassifier:
  """The module for attributes with `num_values` values each."""
  return AttributeClassifier(num_values=tuple(int(k) for k in num_values),
                             widths=tuple(config.widths), hidden=config.hidden)


def attribute_log_probs(model: AttributeClassifier, params: Params,
                        images) -> list:
  """Per attribute j, log-probabilities (N, num_values[j]) of its values."""
  logits = model.apply({"params": params}, images)
  splits = np.cumsum(model.num_values)[:-1]
  return [jax.nn.log_softmax(block) for block in jnp.split(logits, splits, axis=-1)]


def attribute_loss(model: AttributeClassifier, params: Params, images, attributes):
  """Mean cross-entropy over the observed entries of attributes (B, a), NaN = missing.

  Returns (loss, per-attribute accuracy (a,) over the observed entries).
  """
  log_probs = attribute_log_probs(model, params, images)
  present = ~jnp.isnan(attributes)
  labels = jnp.where(present, attributes, 0).astype(jnp.int32)
  nll, correct = [], []
  for j, block in enumerate(log_probs):
    nll.append(-jnp.take_along_axis(block, labels[:, j:j + 1], axis=-1)[:, 0])
    correct.append(jnp.argmax(block, axis=-1) == labels[:, j])
  nll, correct = jnp.stack(nll, axis=1), jnp.stack(correct, axis=1)
  count = jnp.maximum(jnp.sum(present), 1)
  loss = jnp.sum(jnp.where(present, nll, 0.0)) / count
  accuracy = (jnp.sum(jnp.where(present, correct, False), axis=0)
              / jnp.maximum(jnp.sum(present, axis=0), 1))
  return loss, accuracy


@functools.partial(jax.jit, static_argnames=("model", "optimizer"))
def train_step(params, opt_state, images, attributes, model, optimizer):
  """One Adam step: returns (params, opt_state, {"loss", "accuracy" (a,)})."""
  (loss, accuracy), grads = jax.value_and_grad(
      lambda p: attribute_loss(model, p, images, attributes), has_aux=True)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, {"loss": loss,
                                                           "accuracy": accuracy}


def _check_attributes(images, attributes, num_values) -> np.ndarray:
  attributes = np.asarray(attributes, np.float32)
  if attributes.shape != (len(images), len(num_values)):
    raise ValueError(f"attributes must have shape ({len(images)}, {len(num_values)}), "
                     f"got {attributes.shape}.")
  return attributes


def train_attribute_classifier(images, attributes, num_values: Sequence[int],
                               config: AttributeClassifierConfig = AttributeClassifierConfig(),
                               log: Optional[Callable[[str], None]] = None) -> Params:
  """Trains an `AttributeClassifier` by Adam, deterministic given config.seed.

  Args:
    images: (N, H, W, C) in [0, 1] or uint8; any object with len() whose integer-array
      indexing gives such a batch (a numpy array, a `tripjax.data.ImageDataset`).
    attributes: (N, a) value indices as floats, NaN where unknown.
    num_values: (a,) values of each attribute.
    config: hyper-parameters.
    log: optional callable receiving one line per epoch.

  Returns:
    Trained params of `make_classifier(num_values, config)`.
  """
  attributes = _check_attributes(images, attributes, num_values)
  model = make_classifier(num_values, config)
  first = images_lib.as_unit_images(images[np.arange(1)])
  params = jax.jit(model.init)(jax.random.key(config.seed, impl="rbg"), first)["params"]
  optimizer = optax.adam(config.learning_rate)
  opt_state = optimizer.init(params)
  num_batches = len(images) // config.batch_size
  for epoch in range(config.num_epochs):
    order = np.random.default_rng([config.seed, epoch]).permutation(len(images))
    epoch_metrics = []
    for step in range(num_batches):
      index = np.sort(order[step * config.batch_size:(step + 1) * config.batch_size])
      batch = images_lib.as_unit_images(images[index])
      params, opt_state, metrics = train_step(params, opt_state, batch,
                                              attributes[index], model, optimizer)
      epoch_metrics.append(metrics)
    if log is not None and epoch_metrics:
      loss = float(np.mean([m["loss"] for m in epoch_metrics]))
      accuracy = np.mean([m["accuracy"] for m in epoch_metrics], axis=0)
      log(f"epoch {epoch + 1}/{config.num_epochs}: loss {loss:.4f}, mean train "
          f"accuracy {float(np.mean(accuracy)):.4f}")
  return params


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
