"""Tests for tripjax/input_pipeline.py: the same batches with 0, 1 and 2 grain workers,
across a resume and split over processes, and the preprocessed cache (TFDS mock data)."""
import functools
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import base
from tripjax import data
from tripjax import input_pipeline
from tripjax.training import loop

NUM_MOCK_EXAMPLES = 48
BATCH_SIZE = 8


@pytest.fixture(scope="module")
def mock_tfds():
  with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _step_indices(num_examples, position=loop.Position(0, 0, 0), *, stop_step,
                  batches_per_step=1, rows=slice(None), seed=3):
  options = loop.LoopOptions(num_epochs=10, batch_size=BATCH_SIZE, seed=seed)
  schedule = loop.make_schedule(options, num_examples, batches_per_step)._replace(
      stop_step=stop_step)
  return loop.RunStepIndices(num_examples, options, schedule, batches_per_step,
                             position, rows)


def _today(dataset, step_indices):
  """What the loop read before grain: `dataset.read` of each batch, in order."""
  return [[(indices, *dataset.read(indices)) for indices in step]
          for step in step_indices]


def _assert_same_steps(steps, expected):
  assert len(steps) == len(expected)
  for step, expected_step in zip(steps, expected):
    assert len(step) == len(expected_step)
    for read, (indices, images, labels) in zip(step, expected_step):
      np.testing.assert_array_equal(read.indices, indices)
      np.testing.assert_array_equal(read.images, images)
      np.testing.assert_array_equal(read.labels, labels)


def test_steps_follow_todays_batch_order_across_epochs():
  """RunStepIndices = data.batch_indices of (seed, epoch), epoch after epoch, leftover
  batches dropped (k = 2 batches per step: 5 batches per epoch -> 2 steps)."""
  num_examples = 43  # 5 whole batches of 8
  steps = _step_indices(num_examples, stop_step=5, batches_per_step=2)
  expected = []
  for epoch in range(3):
    batches = data.batch_indices(num_examples, BATCH_SIZE, seed=3, epoch=epoch)
    expected += [batches[0:2], batches[2:4]]
  assert len(steps) == 5
  for step, expected_step in zip(steps, expected[:5]):
    assert len(step) == 2
    for indices, expected_indices in zip(step, expected_step):
      np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize("position", [loop.Position(3, 0, 3), loop.Position(6, 1, 1),
                                      loop.Position(10, 2, 0)])
def test_a_resumed_run_reads_the_rest_of_the_uninterrupted_runs_steps(position):
  uninterrupted = _step_indices(45, stop_step=14)  # 5 steps per epoch
  resumed = _step_indices(45, position, stop_step=14)
  assert len(resumed) == 14 - position.step
  for step, expected_step in zip(resumed, uninterrupted[position.step:]):
    np.testing.assert_array_equal(step[0], expected_step[0])


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_grain_reads_todays_batches_with_any_worker_count(mock_tfds, num_workers):
  dataset = data.load_dataset("mnist", "train")
  assert dataset.storage == "tfds" and input_pipeline.uses_workers(dataset)
  # Two and a half epochs from the middle of the first (a resumed run's steps).
  step_indices = _step_indices(len(dataset), loop.Position(2, 0, 2), stop_step=12)
  steps = list(input_pipeline.read_steps(dataset, step_indices, num_workers=num_workers))
  _assert_same_steps(steps, _today(dataset, step_indices))


def test_two_processes_read_disjoint_rows_whose_union_is_the_global_batch(mock_tfds):
  """Each simulated process reads (calls `read` on) only its half of every batch."""
  dataset = data.load_dataset("cifar10", "train")
  global_steps = _step_indices(len(dataset), stop_step=6)
  read_by = {0: [], 1: []}
  process_steps = {}
  for process_index in (0, 1):
    rows = slice(process_index * BATCH_SIZE // 2, (process_index + 1) * BATCH_SIZE // 2)

    def read(indices, reads=read_by[process_index]):
      reads.append(np.array(indices))
      return dataset.read(indices)

    recording = data.ImageDataset(name=dataset.name, split=dataset.split,
                                  image_shape=dataset.image_shape,
                                  num_examples=len(dataset), read_fn=read,
                                  binarized=dataset.binarized, storage="tfds")
    step_indices = _step_indices(len(dataset), stop_step=6, rows=rows)
    process_steps[process_index] = list(input_pipeline.read_steps(recording,
                                                                  step_indices))
  for step, expected in enumerate(_today(dataset, global_steps)):
    (indices, images, labels), = expected
    first, second = process_steps[0][step][0], process_steps[1][step][0]
    np.testing.assert_array_equal(read_by[0][step], first.indices)
    np.testing.assert_array_equal(read_by[1][step], second.indices)
    assert not set(first.indices) & set(second.indices)
    np.testing.assert_array_equal(np.concatenate([first.indices, second.indices]),
                                  indices)
    np.testing.assert_array_equal(np.concatenate([first.images, second.images]), images)
    np.testing.assert_array_equal(np.concatenate([first.labels, second.labels]), labels)


def test_sets_in_memory_are_read_directly_without_grain(monkeypatch):
  monkeypatch.setitem(sys.modules, "grain", None)  # Importing grain would fail.
  dataset = data.load_dataset("digits", "train")
  assert not input_pipeline.uses_workers(dataset)
  step_indices = _step_indices(len(dataset), stop_step=3)
  steps = list(input_pipeline.read_steps(dataset, step_indices, num_workers=2))
  _assert_same_steps(steps, _today(dataset, step_indices))
  assert "from memory, read directly" in input_pipeline.describe(dataset, 2)


def test_the_loop_trains_on_the_same_batches_through_grain_workers_and_a_resume(
    mock_tfds, tmp_path):
  """A run with 2 workers stopped mid-epoch and resumed with 1 sees the batches of a
  0-worker run in the same order: the state folds every batch in, order-sensitively."""
  dataset = data.load_dataset("mnist", "train")  # 44 train examples: 5 batches of 8

  def train_step(state, batch, rng):
    del rng
    weights = jnp.arange(1, batch["image"].size + 1, dtype=jnp.float32)
    checksum = jnp.sum(batch["image"].reshape(-1) * weights) + jnp.sum(batch["label"])
    return {"checksum": state["checksum"] * 1.0001 + checksum}, {"loss": checksum}

  task = loop.Task(init_state={"checksum": jnp.float32(0.0)}, train_step=train_step)

  def run(workdir, num_workers, max_steps=None):
    options = loop.LoopOptions(num_epochs=2, batch_size=BATCH_SIZE, seed=1,
                               max_steps=max_steps, progress_bar=False,
                               log_every_steps=1)
    return loop.run(workdir=str(workdir), options=options, task=task,
                    train_dataset=dataset, num_workers=num_workers)

  expected = run(tmp_path / "in_process", num_workers=0)
  run(tmp_path / "workers", num_workers=2, max_steps=3)  # stops mid-epoch 1
  resumed = run(tmp_path / "workers", num_workers=1)
  assert float(resumed["checksum"]) == float(expected["checksum"]) != 0.0


def test_num_workers_must_be_a_non_negative_int():
  assert input_pipeline.check_num_workers(3) == 3
  for bad in (-1, 1.5, True, "2"):
    with pytest.raises(ValueError, match="data.num_workers"):
      input_pipeline.check_num_workers(bad)
  config = base.get_config()
  assert config.data.num_workers == input_pipeline.DEFAULT_NUM_WORKERS
  assert config.data.cache_dir is None


# ------------------------------------------------------------------ the cache


def test_the_cache_reads_the_arrays_of_decoding_on_the_fly(mock_tfds, tmp_path):
  for name in ("celeb_a", "mnist"):  # RGB levels k/255; binarized {0, 1}
    dataset = data.load_dataset(name, "train")
    cached = input_pipeline.cached(dataset, tmp_path)
    assert cached.storage == "cache" and len(cached) == len(dataset)
    assert cached.attribute_names == dataset.attribute_names
    indices = np.random.default_rng(0).permutation(len(dataset))[:20]
    images, labels = cached.read(indices)
    expected_images, expected_labels = dataset.read(indices)
    assert images.dtype == expected_images.dtype == np.float32
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert "from cache" in input_pipeline.describe(cached, 0)


def test_an_existing_cache_is_read_not_rebuilt(mock_tfds, tmp_path, monkeypatch):
  dataset = data.load_dataset("cifar10", "test")
  input_pipeline.cached(dataset, tmp_path)

  def no_build(*args):
    raise AssertionError("rebuilt")

  monkeypatch.setattr(input_pipeline, "_build_cache", no_build)
  again = input_pipeline.cached(dataset, tmp_path)
  np.testing.assert_array_equal(again.images, dataset.images)


def test_a_changed_crop_size_builds_a_new_cache(mock_tfds, tmp_path, monkeypatch):
  dataset = data.load_dataset("celeb_a", "test")
  first_path = input_pipeline.cache_path(dataset, tmp_path)
  first = input_pipeline.cached(dataset, tmp_path)
  monkeypatch.setattr(data, "center_crop_and_resize",
                      functools.partial(data.center_crop_and_resize, crop_size=120))
  second_path = input_pipeline.cache_path(dataset, tmp_path)
  assert second_path != first_path
  second = input_pipeline.cached(dataset, tmp_path)
  np.testing.assert_array_equal(second.images, dataset.images)  # the 120 px crop
  assert not np.array_equal(second.images, first.images)
  assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
      path.split("/")[-1] for path in (first_path, second_path))
