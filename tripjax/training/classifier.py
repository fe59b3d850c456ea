"""Training the classifiers of the metrics on the shared loop (`config.model.kind`).

* "digits": the digit classifier of the offline metrics (classifier FD, the digits'
  condition violation rate). `tripjax.models.classifier.DigitClassifier` learns the 10
  digit classes from grey-level digits, a random `train.binarize_fraction` of each
  batch thresholded at 0.5. After the last step its accuracies on the validation and
  test splits (grey and binarized) are logged and the weights are written to the
  workdir in the format `tripjax.metrics.classifier_fd.load_classifier` reads.
* "attributes": the attribute classifier of the condition violation rate on CelebA
  (`tripjax.models.classifier.AttributeClassifier`, a softmax per attribute of
  `tripjax.data.attribute_specs`). After the last step its per-attribute accuracies on
  the validation and test splits are logged and it is written to
  workdir/attribute_classifier.msgpack (+ .json), read by `load_attribute_classifier`.

`get_or_train` reuses a workdir's classifier when it was trained with the same config.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from tripjax import data as data_lib
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import loop
from tripjax.training import sharding
from tripjax.training import workdirs


MODEL_KINDS = ("digits", "attributes")
ATTRIBUTE_WEIGHTS_FILENAME = "attribute_classifier.msgpack"
ATTRIBUTE_METADATA_FILENAME = "attribute_classifier.json"
ATTRIBUTE_CLASSIFIER_CONFIG = "celeba_attribute_classifier"


@flax.struct.dataclass
class ClassifierState:
  params: Any
  opt_state: Any


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a classifier config."""
  config_checks.check_choice(config, "task", ("classifier",))
  config_checks.check_choice(config, "model.kind", MODEL_KINDS)
  config_checks.check_int(config, "data.num_train_examples", minimum=1, optional=True)
  config_checks.check_common_train_fields(config)
  config_checks.check_int(config, "eval.batch_size", minimum=1)
  if config.model.kind == "digits":
    config_checks.check_choice(config, "data.name", ("digits",))
    config_checks.check_bool(config, "data.binarize")
    config_checks.check_number(config, "train.binarize_fraction", minimum=0.0,
                               maximum=1.0)
    config_checks.check_int(config, "model.feature_dim", minimum=1)
  else:
    config_checks.check_choice(config, "data.name", data_lib.ATTRIBUTE_DATASETS)
    config_checks.check_int(config, "data.num_eval_examples", minimum=1, optional=True)
    config_checks.check_int_sequence(config, "model.widths", minimum=1)
    config_checks.check_int(config, "model.hidden", minimum=1)


def make_train_step(optimizer: optax.GradientTransformation, binarize_fraction: float):
  """Cross-entropy step on {"image" (B, 28, 28, 1) in [0, 1], "label" (B,) int}."""

  def train_step(state: ClassifierState, batch: dict, rng: jax.Array):
    images = batch["image"]
    binarized = jax.random.uniform(rng, (images.shape[0], 1, 1, 1)) < binarize_fraction
    images = jnp.where(binarized, (images > 0.5).astype(images.dtype), images)
    (loss, accuracy), grads = jax.value_and_grad(
        classifier_fd.cross_entropy_loss, has_aux=True)(state.params, images,
                                                        batch["label"])
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return (ClassifierState(optax.apply_updates(state.params, updates), opt_state),
            {"loss": loss, "accuracy": accuracy})

  return train_step


def accuracies(config: ml_collections.ConfigDict, params) -> dict[str, float]:
  """Top-1 accuracy on the validation and test splits, grey and binarized."""
  params = distributed.to_host(params)
  results = {}
  for split in ("validation", "test"):
    dataset = data_lib.load_dataset(config.data.name, split, binarize=False)
    images, labels = dataset.images, dataset.labels
    results[f"{split}_accuracy"] = classifier_fd.classifier_accuracy(
        params, images, labels, config.eval.batch_size)
    results[f"{split}_accuracy_binarized"] = classifier_fd.classifier_accuracy(
        params, data_lib.binarize_images(images), labels, config.eval.batch_size)
  return results


def make_attribute_train_step(model, optimizer: optax.GradientTransformation):
  """Cross-entropy step of an `AttributeClassifier` on {"image" (B, H, W, C) in
  [0, 1], "attributes" (B, a), NaN = unknown}; metrics loss and accuracy (the mean
  over the attributes of the observed entries)."""

  def train_step(state: ClassifierState, batch: dict, rng: jax.Array):
    del rng
    (loss, accuracy), grads = jax.value_and_grad(
        lambda params: attribute_classifier.attribute_loss(
            model, params, batch["image"], batch["attributes"]),
        has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return (ClassifierState(optax.apply_updates(state.params, updates), opt_state),
            {"loss": loss, "accuracy": jnp.mean(accuracy)})

  return train_step


def attribute_accuracies(config: ml_collections.ConfigDict, model, params
                         ) -> dict[str, float]:
  """Per-attribute accuracy on the validation and test splits (their first
  `data.num_eval_examples`), and its mean: {f"{split}_accuracy_{name}",
  f"{split}_accuracy"}."""
  params = distributed.to_host(params)
  specs = data_lib.attribute_specs(config.data.name)
  results = {}
  for split in ("validation", "test"):
    dataset = data_lib.load_dataset(config.data.name, split,
                                    data_dir=config.data.data_dir)
    if config.data.num_eval_examples is not None:
      dataset = dataset.take(config.data.num_eval_examples)
    correct = []
    for batch in data_lib.padded_batches(dataset, config.eval.batch_size):
      real = batch.mask > 0
      truth = data_lib.attributes_from_labels(config.data.name, batch.labels[real])
      predicted = attribute_classifier.predict_attributes(
          model, params, batch.images[real], config.eval.batch_size)
      correct.append(predicted == truth)
    correct = np.concatenate(correct)
    for j, spec in enumerate(specs):
      results[f"{split}_accuracy_{spec.name}"] = float(np.mean(correct[:, j]))
    results[f"{split}_accuracy"] = float(np.mean(correct))
  return results


def _digits_task(config: ml_collections.ConfigDict, workdir: str) -> loop.Task:
  optimizer = optax.adam(config.train.learning_rate)
  params = classifier_fd.init_params(jax.random.PRNGKey(config.train.seed),
                                     config.model.feature_dim)

  def after_step(state: ClassifierState, progress: loop.Progress):
    if not progress.final:
      return state, {}
    metrics = accuracies(config, state.params)
    params = distributed.to_host(state.params)
    if distributed.is_main_process():
      classifier_fd.save_classifier(workdir, params,
                                    {"config": config.to_dict(), **metrics})
    return state, metrics

  return loop.Task(
      init_state=ClassifierState(params, optimizer.init(params)),
      train_step=make_train_step(optimizer, config.train.binarize_fraction),
      after_step=after_step, shown_metrics=("loss", "accuracy"))


def _attributes_task(config: ml_collections.ConfigDict, workdir: str,
                     image_shape) -> loop.Task:
  name = config.data.name
  model = attribute_classifier.make_classifier(
      [spec.num_values for spec in data_lib.attribute_specs(name)],
      config.model.widths, config.model.hidden)
  optimizer = optax.adam(config.train.learning_rate)
  # An RBG key: the compiled init is several times cheaper than with threefry keys.
  params = jax.jit(model.init)(jax.random.key(config.train.seed, impl="rbg"),
                               jnp.zeros((1,) + tuple(image_shape)))["params"]

  def prepare_batch(indices, images, labels):
    del indices
    return {"image": images, "attributes": data_lib.attributes_from_labels(name, labels)}

  def after_step(state: ClassifierState, progress: loop.Progress):
    if not progress.final:
      return state, {}
    metrics = attribute_accuracies(config, model, state.params)
    if distributed.is_main_process():
      save_attribute_classifier(workdir, model, distributed.to_host(state.params),
                                {"config": config.to_dict(), **metrics})
    return state, metrics

  return loop.Task(
      init_state=ClassifierState(params, optimizer.init(params)),
      train_step=make_attribute_train_step(model, optimizer), after_step=after_step,
      shown_metrics=("loss", "accuracy"), prepare_batch=prepare_batch)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       mesh: jax.sharding.Mesh | None = None,
                       allow_config_change: bool = False,
                       step_hooks=()) -> ClassifierState:
  """Trains the classifier; after the last step writes its weights and accuracies."""
  validate_config(config)
  workdirs.check_rerun(config, workdir, allow_config_change=allow_config_change)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  if config.model.kind == "digits":
    train_dataset = data_lib.load_dataset(config.data.name, "train",
                                          binarize=config.data.binarize)
  else:
    train_dataset = data_lib.load_dataset(config.data.name, "train",
                                          data_dir=config.data.data_dir)
  if config.data.num_train_examples is not None:
    train_dataset = train_dataset.take(config.data.num_train_examples)
  if config.model.kind == "digits":
    task = _digits_task(config, workdir)
  else:
    task = _attributes_task(config, workdir, train_dataset.image_shape)
  tqdm.tqdm.write(f"{config.model.kind.capitalize()} classifier on "
                  f"{len(train_dataset)} train images of {config.data.name}, "
                  f"{mesh.devices.size} device(s); writing to {workdir}.")
  return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                  task=task, train_dataset=train_dataset, mesh=mesh,
                  step_hooks=step_hooks, config=config)


def save_attribute_classifier(workdir: str, model, params, metadata: dict) -> None:
  """Writes an attribute classifier and its metadata (with "config") into `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  attribute_classifier.save_attribute_classifier(
      os.path.join(workdir, ATTRIBUTE_WEIGHTS_FILENAME), model, params)
  with open(os.path.join(workdir, ATTRIBUTE_METADATA_FILENAME), "w") as file:
    json.dump(metadata, file, indent=2, sort_keys=True)


def load_attribute_classifier(workdir: str):
  """(model, params, metadata) of the attribute classifier trained in `workdir`.

  Raises:
    FileNotFoundError: none there (the message gives the training command).
  """
  weights_path = os.path.join(workdir, ATTRIBUTE_WEIGHTS_FILENAME)
  metadata_path = os.path.join(workdir, ATTRIBUTE_METADATA_FILENAME)
  if not (os.path.exists(weights_path) and os.path.exists(metadata_path)):
    raise FileNotFoundError(
        f"no attribute classifier in {workdir!r}; train it with `python -m "
        f"train.train_classifier --config {ATTRIBUTE_CLASSIFIER_CONFIG} --workdir "
        f"{workdir}`.")
  model, params = attribute_classifier.load_attribute_classifier(weights_path)
  with open(metadata_path) as file:
    metadata = json.load(file)
  return model, params, metadata


def _load(config: ml_collections.ConfigDict, workdir: str):
  """(weights, metadata) of the classifier cached in `workdir` (FileNotFoundError)."""
  if config.model.kind == "digits":
    return classifier_fd.load_classifier(workdir)
  model, params, metadata = load_attribute_classifier(workdir)
  return (model, params), metadata


def get_or_train(config: ml_collections.ConfigDict, workdir: str, *,
                 log: Callable[[str], None] = tqdm.tqdm.write):
  """(weights, metadata) of the classifier in `workdir`, training it first if needed.

  The weights are the digit classifier's params (`model.kind` "digits") or
  (`AttributeClassifier`, params) ("attributes"). The cached classifier is reused
  only if it was trained with the same config (compared as its JSON).
  """
  try:
    weights, metadata = _load(config, workdir)
  except FileNotFoundError:
    pass
  else:
    if metadata.get("config") == json.loads(json.dumps(config.to_dict())):
      log(f"Using the cached classifier in {workdir} (test accuracy "
          f"{metadata['test_accuracy']:.4f}).")
      return weights, metadata
  train_and_evaluate(config, workdir)
  weights, metadata = _load(config, workdir)
  log(f"Test accuracy {metadata['test_accuracy']:.4f}; saved in {workdir}.")
  return weights, metadata
