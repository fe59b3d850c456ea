"""Training the digit classifier of the offline metrics (classifier FD, condition
violation rate) on the shared loop.

The classifier (`tripjax.models.classifier.DigitClassifier`) learns the 10 digit classes
from grey-level digits, a random `train.binarize_fraction` of each batch thresholded at
0.5. After the last step its accuracies on the validation and test splits (grey and
binarized) are logged and the weights are written to the workdir in the format
`tripjax.metrics.classifier_fd.load_classifier` reads; `get_or_train` reuses them when
the workdir already holds a classifier of the same config.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from tripjax import data as data_lib
from tripjax.metrics import classifier_fd
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import loop
from tripjax.training import sharding
from tripjax.training import workdirs


@flax.struct.dataclass
class ClassifierState:
  params: Any
  opt_state: Any


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a classifier config."""
  config_checks.check_choice(config, "task", ("classifier",))
  config_checks.check_choice(config, "data.name", ("digits",))
  config_checks.check_bool(config, "data.binarize")
  config_checks.check_int(config, "data.num_train_examples", minimum=1, optional=True)
  config_checks.check_common_train_fields(config)
  config_checks.check_number(config, "train.binarize_fraction", minimum=0.0, maximum=1.0)
  config_checks.check_int(config, "model.feature_dim", minimum=1)
  config_checks.check_int(config, "eval.batch_size", minimum=1)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       mesh: jax.sharding.Mesh | None = None,
                       allow_config_change: bool = False,
                       step_hooks=()) -> ClassifierState:
  """Trains the classifier; after the last step writes its weights and accuracies."""
  validate_config(config)
  workdirs.check_rerun(config, workdir, allow_config_change=allow_config_change)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  train_dataset = data_lib.load_dataset(config.data.name, "train",
                                        binarize=config.data.binarize)
  if config.data.num_train_examples is not None:
    train_dataset = train_dataset.take(config.data.num_train_examples)
  optimizer = optax.adam(config.train.learning_rate)
  params = classifier_fd.init_params(jax.random.PRNGKey(config.train.seed),
                                     config.model.feature_dim)
  tqdm.tqdm.write(f"Digit classifier on {len(train_dataset)} train digits, "
                  f"{mesh.devices.size} device(s); writing to {workdir}.")

  def after_step(state: ClassifierState, progress: loop.Progress):
    if not progress.final:
      return state, {}
    metrics = accuracies(config, state.params)
    params = distributed.to_host(state.params)
    if distributed.is_main_process():
      classifier_fd.save_classifier(workdir, params,
                                    {"config": config.to_dict(), **metrics})
    return state, metrics

  task = loop.Task(
      init_state=ClassifierState(params, optimizer.init(params)),
      train_step=make_train_step(optimizer, config.train.binarize_fraction),
      after_step=after_step, shown_metrics=("loss", "accuracy"))
  return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                  task=task, train_dataset=train_dataset, mesh=mesh,
                  step_hooks=step_hooks, config=config)


def get_or_train(config: ml_collections.ConfigDict, workdir: str, *,
                 log: Callable[[str], None] = tqdm.tqdm.write):
  """(params, metadata) of the classifier in `workdir`, training it first if needed.

  The cached classifier is reused only if it was trained with the same config.
  """
  try:
    params, metadata = classifier_fd.load_classifier(workdir)
  except FileNotFoundError:
    pass
  else:
    if metadata.get("config") == config.to_dict():
      log(f"Using the cached classifier in {workdir} (test accuracy "
          f"{metadata['test_accuracy']:.4f}).")
      return params, metadata
  train_and_evaluate(config, workdir)
  params, metadata = classifier_fd.load_classifier(workdir)
  log(f"Test accuracy {metadata['test_accuracy']:.4f} (binarized "
      f"{metadata['test_accuracy_binarized']:.4f}); saved in {workdir}.")
  return params, metadata
