"""Hidden attribute labels imputed by a predictor of y from x (section 5 of the paper:
"imputing them with a predictive model"; the `cvae_imputed` baseline).

The predictor (`tripjax.models.classifier.AttributeClassifier`, a softmax per
attribute) is trained on the training images and the labels that this run sees: the
hidden ones are NaN and left out of its loss (`attribute_classifier.attribute_loss`).
It is not the classifier that scores the condition violations, which saw every label.
Each hidden label is then replaced by the predictor's most probable value; the visible
ones are kept. `imputer.*` of the config sets the predictor and its training.
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tripjax import data as data_lib
from tripjax.metrics import attribute_classifier
from tripjax.models.classifier import AttributeClassifier
from tripjax.training import config_checks


class Imputation(NamedTuple):
  """The training attributes with every hidden label imputed.

  Attributes:
    attributes: (N, a) float32 value indices, no NaN: the visible labels, and the
      predictor's most probable value where a label is hidden.
    model: the predictor (None when no label is hidden: nothing to impute).
    params: its parameters (host), or None.
  """
  attributes: np.ndarray
  model: AttributeClassifier | None
  params: Any


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad `imputer.*` field."""
  config_checks.check_int_sequence(config, "imputer.widths", minimum=1)
  config_checks.check_int(config, "imputer.hidden", minimum=1)
  config_checks.check_int(config, "imputer.num_epochs", minimum=1)
  config_checks.check_int(config, "imputer.batch_size", minimum=1)
  config_checks.check_number(config, "imputer.learning_rate", minimum=0.0)


def train_predictor(config: ml_collections.ConfigDict, dataset: data_lib.ImageDataset,
                    visible: np.ndarray, key: jax.Array, seed: int
                    ) -> tuple[AttributeClassifier, Any]:
  """An attribute predictor trained on `dataset`'s images and the labels `visible`.

  Args:
    config: `imputer.widths`, `.hidden`, `.num_epochs`, `.batch_size`,
      `.learning_rate`.
    dataset: the training split; only its images are read.
    visible: (N, a) attribute value indices, NaN where hidden (left out of the loss).
    key: the initial parameters' key.
    seed: the batch order's seed (`data.batch_indices`).

  Returns:
    (model, params on the host).
  """
  visible = np.asarray(visible, np.float32)
  if visible.shape[0] != len(dataset):
    raise ValueError(f"visible has {visible.shape[0]} rows for {len(dataset)} examples.")
  specs = data_lib.attribute_specs(dataset.name)
  model = attribute_classifier.make_classifier(
      [spec.num_values for spec in specs], config.imputer.widths, config.imputer.hidden)
  optimizer = optax.adam(config.imputer.learning_rate)
  params = jax.jit(model.init)(key, jnp.zeros((1,) + dataset.image_shape))["params"]
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, images, attributes):
    grads, _ = jax.grad(
        lambda params: attribute_classifier.attribute_loss(model, params, images,
                                                           attributes),
        has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  batch_size = min(config.imputer.batch_size, len(dataset))
  for epoch in range(config.imputer.num_epochs):
    for indices in data_lib.batch_indices(len(dataset), batch_size, seed=seed,
                                          epoch=epoch):
      images, _ = dataset.read(indices)  # its labels are not read: `visible` only
      params, opt_state = step(params, opt_state, images, visible[indices])
  return model, jax.device_get(params)


def impute(model: AttributeClassifier, params: Any, dataset: data_lib.ImageDataset,
           visible: np.ndarray, batch_size: int) -> np.ndarray:
  """`visible` (N, a) with each NaN replaced by the predictor's most probable value
  for that example's image: (N, a) float32."""
  visible = np.asarray(visible, np.float32)
  imputed = visible.copy()
  rows = np.flatnonzero(np.isnan(visible).any(axis=1))
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    images, _ = dataset.read(chunk)
    predicted = attribute_classifier.predict_attributes(model, params, images,
                                                        batch_size)
    imputed[chunk] = np.where(np.isnan(visible[chunk]), predicted, visible[chunk])
  return imputed


def _cache_key(config: ml_collections.ConfigDict, dataset: data_lib.ImageDataset,
               visible: np.ndarray, seed: int) -> dict:
  """What the cached predictor depends on (JSON)."""
  return json.loads(json.dumps({
      "imputer": config.imputer.to_dict(), "dataset": dataset.name,
      "num_examples": len(dataset), "seed": seed,
      "hidden": int(np.isnan(visible).sum())}))


def impute_hidden_labels(config: ml_collections.ConfigDict,
                         dataset: data_lib.ImageDataset, visible: np.ndarray,
                         key: jax.Array, seed: int, workdir: str | None = None,
                         save: bool = True) -> Imputation:
  """The training attributes with the hidden labels imputed (`train_predictor`, then
  `impute`); `visible` itself when no label is hidden (no predictor is trained).

  Args:
    config: the `imputer.*` fields.
    dataset: the training split.
    visible: (N, a) its attributes, NaN where hidden.
    key: the predictor's initial parameters' key.
    seed: its batch order's seed.
    workdir: where the predictor is cached (`attribute_classifier.save_to_workdir`):
      reused when trained with the same fields, split, seed and number of hidden
      labels (a resumed run imputes the same values without training again).
    save: whether to write the cache (the main process only).
  """
  visible = np.asarray(visible, np.float32)
  if not np.isnan(visible).any():
    return Imputation(visible, None, None)  # "cvae_imputed" is then "cvae"
  cache = _cache_key(config, dataset, visible, seed)
  trained = None
  if workdir is not None:
    try:
      model, params, metadata = attribute_classifier.load_from_workdir(workdir)
    except FileNotFoundError:
      pass
    else:
      if metadata.get("config") == cache:
        trained = model, params
  if trained is None:
    trained = train_predictor(config, dataset, visible, key, seed)
    if workdir is not None and save:
      attribute_classifier.save_to_workdir(workdir, *trained, {"config": cache})
  model, params = trained
  return Imputation(impute(model, params, dataset, visible, config.imputer.batch_size),
                    model, params)
