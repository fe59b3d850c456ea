"""Training input: each step's batches read ahead, by grain workers for the TFDS sets.

The loop hands `read_steps` the example indices of every step it will take (a sequence:
entry i holds the index arrays of step i's batches, this process's rows of each) and
gets back, in that order, `ReadBatch(indices, images, labels)` for each batch, as
`dataset.read(indices)` gives them. How they are read depends on where the examples
live (`ImageDataset.storage`):

* "tfds" (TFDS ArrayRecord files: mnist, fashion_mnist prepared with TFDS, cifar10,
  celeb_a): a grain pipeline over the steps. One grain record is one whole step, and
  its map transform reads and decodes that step's examples (`dataset.read`: the TFDS
  record, JPEG/PNG decoding, celeb_a's crop and resize, binarization), so the order
  and contents of the batches do not depend on `num_workers`: 0 reads on one
  background thread in this process, n > 0 on n worker processes
  (`grain.IterDataset.mp_prefetch`, which hands step i to worker i mod n and yields
  the steps in order). Batching after the workers (`grain.Batch`) would not keep the
  order: each worker would batch its own records. Workers are spawned processes (started
  once per run) that import the main module again: a script that trains with workers
  keeps its work under `if __name__ == "__main__":`, as the train CLIs do.
* "memory" (digits, Fashion-MNIST's IDX files, a `cached` set): read in the caller's
  thread, as indexing arrays costs less than handing batches between processes.

Multi-host: every process computes the same global batches and reads only its rows
(the loop's `distributed.process_slice`); grain shards nothing itself (one record is a
step of this process's rows).

Resume: the steps are a pure function of (seed, epoch, position), so a resumed run
builds the sequence from its checkpointed position and reads the same batches as an
uninterrupted run; no grain iterator state is saved.

The preprocessed cache (`cached`, `data.cache_dir`): the TFDS examples decoded,
cropped, resized (and binarized) once, stored as uint8 arrays (`images.npy`, memory-
mapped, and `labels.npy`) under a key of the dataset and its preprocessing; later
epochs and runs only index them. A change of the preprocessing (crop or image size, a
decoded image) gives another key, so a new cache is built.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Generator, NamedTuple, Sequence

import numpy as np

from tripjax import data as data_lib

# Worker processes for a TFDS set when the config does not say (`data.num_workers`).
# 0: on a 2-core CPU machine one thread decodes faster than the steps consume and the
# workers, with no free core, gained nothing (README, "Input pipeline"); a GPU host
# sets more, with `data.cache_dir`.
DEFAULT_NUM_WORKERS = 0
# Steps each reader keeps ready ahead of the consumer.
READ_AHEAD_STEPS = 2

CACHE_FORMAT_VERSION = 1
_CACHE_PROBES = 16  # decoded examples whose bytes enter the cache key
_CACHE_CHUNK = 256  # examples decoded per grain record while building a cache


class ReadBatch(NamedTuple):
  """One batch as read: what `ImageDataset.read` gives, with its indices.

  Attributes:
    indices: (B,) int64 example indices.
    images: (B, H, W, C) float32 in [0, 1].
    labels: (B, ...) or None.
  """
  indices: np.ndarray
  images: np.ndarray
  labels: np.ndarray | None


def uses_workers(dataset: data_lib.ImageDataset) -> bool:
  """Whether `read_steps` reads `dataset` through grain (TFDS files), not directly."""
  return dataset.storage == "tfds"


def describe(dataset: data_lib.ImageDataset, num_workers: int) -> str:
  """How `read_steps` reads `dataset`, for the run header."""
  if uses_workers(dataset):
    how = ("1 background thread" if num_workers == 0 else
           f"{num_workers} worker process{'es' if num_workers > 1 else ''}")
    return f"input: grain over TFDS {dataset.name}, {how}"
  where = "cache" if dataset.storage == "cache" else "memory"
  return f"input: {dataset.name} from {where}, read directly"


def check_num_workers(num_workers: Any) -> int:
  """`num_workers` as an int >= 0, or a ValueError naming `data.num_workers`."""
  if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
      or num_workers < 0:
    raise ValueError(f"data.num_workers must be an int >= 0 (0: read in this process), "
                     f"got {num_workers!r}.")
  return int(num_workers)


class _ReadStep:
  """grain's map transform: a step's index arrays -> its `ReadBatch`es (picklable)."""

  def __init__(self, dataset: data_lib.ImageDataset):
    self.dataset = dataset

  def __call__(self, indices_of_step: Sequence[np.ndarray]) -> list[ReadBatch]:
    return [ReadBatch(np.asarray(indices), *self.dataset.read(indices))
            for indices in indices_of_step]


def read_steps(dataset: data_lib.ImageDataset,
               step_indices: Sequence[Sequence[np.ndarray]], *,
               num_workers: int = DEFAULT_NUM_WORKERS,
               read_ahead: int = READ_AHEAD_STEPS
               ) -> Generator[list[ReadBatch], None, None]:
  """The batches of each step, in order, as `dataset.read` gives them.

  Args:
    dataset: the training split.
    step_indices: entry i holds the (B,) index arrays of step i's batches; for worker
      processes it is pickled, so a lazy sequence should be cheap to pickle.
    num_workers: grain worker processes for a TFDS set (0: one background thread in
      this process); ignored for sets in memory.
    read_ahead: steps each reader prepares ahead.

  Yields:
    For step i, the list of its `ReadBatch`es (one per index array).
  """
  num_workers = check_num_workers(num_workers)
  if not uses_workers(dataset):
    for indices_of_step in step_indices:
      yield _ReadStep(dataset)(indices_of_step)
    return
  if len(step_indices) == 0:
    return
  import grain  # Imported lazily: only the TFDS sets need it.

  steps = grain.MapDataset.source(step_indices).map(_ReadStep(dataset))
  iterable = steps.to_iter_dataset(grain.ReadOptions(num_threads=1,
                                                     prefetch_buffer_size=read_ahead))
  if num_workers:
    _use_absl_flag_defaults()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=read_ahead))
  iterator = iter(iterable)
  try:
    yield from iterator
  finally:
    close = getattr(iterator, "close", None)
    if close is not None:
      close()  # Stops the worker processes when the caller stops early.


def _use_absl_flag_defaults() -> None:
  """grain <= 0.2.18 reads an absl flag when it starts workers, an error before absl
  has parsed the command line (google/grain#1355): outside an absl app, use the
  flags' defaults."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


# ------------------------------------------------------------------ the cache


def cache_key(dataset: data_lib.ImageDataset) -> str:
  """A digest of the dataset and its preprocessing: name, split, size, binarization,
  celeb_a's crop and image size, and the bytes of `_CACHE_PROBES` decoded examples
  (evenly spaced), so a change in decoding or preprocessing changes the key."""
  num_examples = len(dataset)
  probes = np.unique(np.linspace(0, max(num_examples - 1, 0),
                                 min(_CACHE_PROBES, num_examples)).astype(np.int64))
  images, labels = dataset.read(probes)
  description = {
      "format": CACHE_FORMAT_VERSION, "name": dataset.name, "split": dataset.split,
      "num_examples": num_examples, "image_shape": list(dataset.image_shape),
      "binarized": dataset.binarized, "crop_size": data_lib.CELEB_A_CROP_SIZE,
      "image_size": data_lib.CELEB_A_IMAGE_SIZE,
      "images": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
      "labels": None if labels is None else hashlib.sha256(
          np.ascontiguousarray(labels).tobytes()).hexdigest(),
  }
  return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def cache_path(dataset: data_lib.ImageDataset, cache_dir: str | os.PathLike) -> str:
  """The folder in `cache_dir` that holds (or will hold) `dataset`'s cache."""
  return os.path.join(os.fspath(cache_dir),
                      f"{dataset.name}-{dataset.split}-{cache_key(dataset)[:16]}")


def _to_uint8(images: np.ndarray) -> np.ndarray:
  """Images k/255 (float32) -> k (uint8); a ValueError if they are not exactly that."""
  levels = np.rint(images * 255.0).astype(np.uint8)
  if not np.array_equal(_to_float(levels), images):
    raise ValueError("the images are not multiples of 1/255; they cannot be cached "
                     "as uint8.")
  return levels


def _to_float(levels: np.ndarray) -> np.ndarray:
  """uint8 k -> float32 k/255, the same operation as `data._decode_record`'s."""
  return levels.astype(np.float32) / 255.0


def _build_cache(dataset: data_lib.ImageDataset, path: str, num_workers: int) -> None:
  """Decodes every example once (on grain workers) into `path` (written atomically)."""
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  building = tempfile.mkdtemp(prefix=os.path.basename(path) + ".building-", dir=parent)
  try:
    num_examples = len(dataset)
    images = np.lib.format.open_memmap(
        os.path.join(building, "images.npy"), mode="w+", dtype=np.uint8,
        shape=(num_examples, *dataset.image_shape))
    labels = None
    chunks = [[np.arange(start, min(start + _CACHE_CHUNK, num_examples))]
              for start in range(0, num_examples, _CACHE_CHUNK)]
    for (read,) in read_steps(dataset, chunks, num_workers=num_workers):
      images[read.indices] = _to_uint8(read.images)
      if read.labels is not None:
        if labels is None:
          labels = np.zeros((num_examples, *read.labels.shape[1:]), read.labels.dtype)
        labels[read.indices] = read.labels
    images.flush()
    del images
    if labels is not None:
      np.save(os.path.join(building, "labels.npy"), labels)
    with open(os.path.join(building, "meta.json"), "w") as file:
      json.dump({"name": dataset.name, "split": dataset.split,
                 "num_examples": num_examples, "image_shape": list(dataset.image_shape),
                 "binarized": dataset.binarized,
                 "attribute_names": dataset.attribute_names}, file)
    try:
      os.rename(building, path)
    except OSError:  # Another process finished the same cache first.
      if not os.path.isdir(path):
        raise
  finally:
    shutil.rmtree(building, ignore_errors=True)


def cached(dataset: data_lib.ImageDataset, cache_dir: str | os.PathLike | None, *,
           num_workers: int = DEFAULT_NUM_WORKERS) -> data_lib.ImageDataset:
  """`dataset` read from its preprocessed cache in `cache_dir` (built if missing).

  Sets in memory (and `cache_dir` None) are returned as they are. The cached set reads
  the same arrays as `dataset` (uint8 k back to float32 k/255), from a memory-mapped
  file. With several processes on one host, each builds the cache only if it is
  missing, and the first to finish wins (same contents).

  Args:
    dataset: a split from `data.load_dataset` (or a subset of one).
    cache_dir: where caches live (one folder per dataset and preprocessing key).
    num_workers: grain worker processes that decode while the cache is built.
  """
  if cache_dir is None or dataset.storage != "tfds":
    return dataset
  num_workers = check_num_workers(num_workers)
  path = cache_path(dataset, cache_dir)
  if not os.path.isfile(os.path.join(path, "meta.json")):
    _build_cache(dataset, path, num_workers)
  images = np.load(os.path.join(path, "images.npy"), mmap_mode="r")
  labels_file = os.path.join(path, "labels.npy")
  labels = np.load(labels_file) if os.path.isfile(labels_file) else None
  if images.shape != (len(dataset), *dataset.image_shape):
    raise ValueError(f"The cache {path} holds images of shape {images.shape}, not "
                     f"{(len(dataset), *dataset.image_shape)}; delete it.")

  def read(indices: np.ndarray):
    order = np.argsort(indices, kind="stable")  # Sorted reads of the memory map.
    batch = np.empty((len(indices), *dataset.image_shape), np.uint8)
    batch[order] = images[indices[order]]
    return _to_float(batch), None if labels is None else labels[indices]

  return data_lib.ImageDataset(name=dataset.name, split=dataset.split,
                               image_shape=dataset.image_shape, num_examples=len(dataset),
                               read_fn=read, binarized=dataset.binarized,
                               attribute_names=dataset.attribute_names, storage="cache")
