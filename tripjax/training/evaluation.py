"""Evaluation over a whole split, as every trainer does it: sharded sums and totals.

A trainer writes an `eval_step(params, *batch_arrays, mask, rng) -> {name: sum}` that
sums per-example values over the real (mask = 1) examples of a padded batch, with
"count"; `jit_eval_step` compiles it with the batch split over the devices and
`dataset_totals` adds its sums over every example of a split. `write_checkpoint_eval`
records the evaluation of a saved checkpoint (the trainers' `--eval_only`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax

from tripjax import data as data_lib
from tripjax.training import distributed
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import sharding

EVAL_FILENAME = "eval_metrics.json"

# A `data_lib.PaddedBatch` -> the arrays an eval step takes (mask excluded), each (B, ...).
BatchArraysFn = Callable[[data_lib.PaddedBatch], tuple[Any, ...]]


def jit_eval_step(eval_step: Callable[..., dict], mesh: jax.sharding.Mesh,
                  num_batch_arrays: int) -> Callable[..., dict]:
  """`eval_step(params, *batch_arrays, rng)` jitted with the params and the key
  replicated and each of the `num_batch_arrays` arrays (mask included) split over the
  batch axis; its sums come back replicated."""
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(eval_step,
                 in_shardings=(replicated,) + (split,) * num_batch_arrays + (replicated,),
                 out_shardings=replicated)


def images_only(batch: data_lib.PaddedBatch) -> tuple[Any, ...]:
  """The default `BatchArraysFn`: (images,)."""
  return (batch.images,)


def dataset_totals(eval_step: Callable[..., dict], params: Any,
                   dataset: data_lib.ImageDataset, *, batch_size: int, key: jax.Array,
                   mesh: jax.sharding.Mesh,
                   batch_arrays: BatchArraysFn = images_only) -> dict[str, float]:
  """The sums of a jitted `eval_step` (`jit_eval_step`) added over every example.

  Args:
    eval_step: (params, *batch_arrays(batch), mask (B,), rng) -> dict of scalar sums
      over the real (mask = 1) examples, with "count".
    params: its parameters (replicated over `mesh`, or host arrays).
    dataset: the split.
    batch_size: global eval batch size (divisible by the device count).
    key: batch i gets `fold_in(key, i)`.
    mesh: the 1-D data mesh.
    batch_arrays: a padded batch -> the arrays eval_step takes.

  Returns:
    {name: total} as Python floats, "count" included (one transfer at the end).
  """
  sharding.check_batch_size(batch_size, mesh, "eval batch size")
  rows = distributed.process_slice(batch_size, mesh)
  totals: dict[str, Any] = {}
  for batch_index, batch in enumerate(data_lib.padded_batches(dataset, batch_size)):
    arrays = tuple(array[rows] for array in batch_arrays(batch)) + (batch.mask[rows],)
    sums = eval_step(params, *sharding.shard_batch(arrays, mesh),
                     jax.random.fold_in(key, batch_index))
    totals = {name: totals.get(name, 0.0) + value for name, value in sums.items()}
  return {name: float(total) for name, total in distributed.to_host(totals).items()}


def per_example_means(totals: dict[str, float], prefix: str,
                      renames: dict[str, str] | None = None) -> dict[str, float]:
  """{f"{prefix}_{name}": total / count} of `dataset_totals`' result ("count"
  dropped); `renames` maps a total's name to the name it is reported under."""
  renames = renames or {}
  count = totals["count"]
  return {f"{prefix}_{renames.get(name, name)}": total / count
          for name, total in totals.items() if name != "count"}


def write_checkpoint_eval(workdir: str, position: loop.Position,
                          metrics: dict[str, Any]) -> dict[str, Any]:
  """Appends a checkpoint's evaluation to workdir/metrics.jsonl (split
  "checkpoint_eval") and writes it to workdir/eval_metrics.json; returns the record."""
  with metric_writer.MetricWriter(workdir) as writer:
    record = writer.write(position.step, position.epoch, "checkpoint_eval", metrics)
  with open(os.path.join(workdir, EVAL_FILENAME), "w") as file:
    json.dump(record, file, indent=2)
  return record
