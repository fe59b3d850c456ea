"""Training the classifiers of the metrics on the shared loop (`config.model.kind`).

* "digits": the digit classifier of the offline metrics (classifier FD, the digits'
  condition violation rate). `tripjax.models.classifier.DigitClassifier` learns the 10
  digit classes from grey-level digits (or Fashion-MNIST's 10 classes,
  configs/fashion_mnist_classifier.py), a random `train.binarize_fraction` of each
  batch thresholded at 0.5. After the last step its accuracies on the validation and
  test splits (grey and binarized) are logged and the weights are written to the
  workdir in the format `tripjax.metrics.classifier_fd.load_classifier` reads.
* "attributes": the attribute classifier of the condition violation rate on CelebA
  (`tripjax.models.classifier.AttributeClassifier`, a softmax per attribute of
  `tripjax.data.attribute_specs`). After the last step its per-attribute accuracies on
  the validation and test splits are logged and it is written to the workdir
  (`tripjax.metrics.attribute_classifier.save_to_workdir`, read by its
  `load_from_workdir`).

Loading a trained classifier to score with is the metrics' business
(`tripjax.metrics`); `get_or_train` reuses a workdir's classifier when it was trained
with the same config, and trains it otherwise.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from tripjax import data as data_lib
from tripjax.metrics import attribute_classifier
from tripjax.metrics import classifier_fd
from tripjax.metrics import condition_violation
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import experiment
from tripjax.training import loop

MODEL_KINDS = ("digits", "attributes")
# The 10-class 28x28x1 sets the "digits" kind (`DigitClassifier`) learns.
DIGIT_CLASSIFIER_DATASETS = ("digits", "fashion_mnist")


@flax.struct.dataclass
class ClassifierState:
  """The classifier's parameters and Adam state."""
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
    config_checks.check_choice(config, "data.name", DIGIT_CLASSIFIER_DATASETS)
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
    dataset = data_lib.load_dataset(config.data.name, split,
                                    data_dir=config.data.get("data_dir"), binarize=False)
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
  results: dict[str, float] = {}
  for split in ("validation", "test"):
    dataset = experiment.load_split(config, split, config.data.num_eval_examples)
    truth, predicted = condition_violation.predictions_on(
        dataset, lambda images: attribute_classifier.predict_attributes(
            model, params, images, config.eval.batch_size), config.eval.batch_size)
    results.update(condition_violation.accuracies(truth, predicted, specs,
                                                  f"{split}_accuracy"))
  return results


def _final(progress: loop.Progress) -> bool:
  return progress.final


def _digits_task(config: ml_collections.ConfigDict,
                 context: experiment.RunContext) -> loop.Task:
  optimizer = optax.adam(config.train.learning_rate)
  params = jax.jit(classifier_fd.init_params, static_argnums=1)(
      context.streams.init_key(), config.model.feature_dim)

  def after_step(state: ClassifierState, progress: loop.Progress):
    if not progress.final:
      return state, {}
    metrics = accuracies(config, state.params)
    params = distributed.to_host(state.params)
    if distributed.is_main_process():
      classifier_fd.save_classifier(context.workdir, params,
                                    {"config": config.to_dict(), **metrics})
    return state, metrics

  return loop.Task(
      init_state=ClassifierState(params, optimizer.init(params)),
      train_step=make_train_step(optimizer, config.train.binarize_fraction),
      after_step=after_step, after_step_due=_final, shown_metrics=("loss", "accuracy"))


def _attributes_task(config: ml_collections.ConfigDict,
                     context: experiment.RunContext, image_shape) -> loop.Task:
  name = config.data.name
  model = attribute_classifier.make_classifier(
      [spec.num_values for spec in data_lib.attribute_specs(name)],
      config.model.widths, config.model.hidden)
  optimizer = optax.adam(config.train.learning_rate)
  params = jax.jit(model.init)(context.streams.init_key(),
                               jnp.zeros((1,) + tuple(image_shape)))["params"]

  def prepare_batch(indices, images, labels):
    del indices
    return {"image": images, "attributes": data_lib.attributes_from_labels(name, labels)}

  def after_step(state: ClassifierState, progress: loop.Progress):
    if not progress.final:
      return state, {}
    metrics = attribute_accuracies(config, model, state.params)
    if distributed.is_main_process():
      attribute_classifier.save_to_workdir(context.workdir, model,
                                           distributed.to_host(state.params),
                                           {"config": config.to_dict(), **metrics})
    return state, metrics

  return loop.Task(
      init_state=ClassifierState(params, optimizer.init(params)),
      train_step=make_attribute_train_step(model, optimizer), after_step=after_step,
      after_step_due=_final, shown_metrics=("loss", "accuracy"),
      prepare_batch=prepare_batch)


def build(config: ml_collections.ConfigDict,
          context: experiment.RunContext) -> experiment.Experiment:
  """The `experiment.Experiment` of a classifier config (`Trainer.build`)."""
  train_dataset = experiment.load_split(config, "train",
                                        config.data.num_train_examples)
  if config.model.kind == "digits":
    task = _digits_task(config, context)
  else:
    task = _attributes_task(config, context, train_dataset.image_shape)
  header = (f"{config.model.kind.capitalize()} classifier on {len(train_dataset)} "
            f"train images of {config.data.name}")
  return experiment.Experiment(task, train_dataset, header)


TRAINER = experiment.Trainer(name="classifier", validate_config=validate_config,
                             build=build)


# Trains this task in a workdir (`experiment.Trainer.train_and_evaluate`).
train_and_evaluate = TRAINER.train_and_evaluate


def _load(config: ml_collections.ConfigDict, workdir: str) -> tuple[Any, dict]:
  """(weights, metadata) of the classifier cached in `workdir` (FileNotFoundError)."""
  if config.model.kind == "digits":
    return classifier_fd.load_classifier(workdir)
  model, params, metadata = attribute_classifier.load_from_workdir(workdir)
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
