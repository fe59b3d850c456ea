"""Tests for tripjax/training/checkpoints.py: fallback past damaged checkpoints,
interrupted saves, structure mismatches, on real orbax checkpoint directories."""
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from tripjax.training import checkpoints

STEPS = (1, 2, 3)


def tree_of_step(step, width=32):
  """A small state whose values identify the step it was saved at (the kernel,
  4 KiB, is stored in a data file; smaller arrays are inlined in the index)."""
  return {"params": {"kernel": jnp.arange(width * 32, dtype=jnp.float32)
                               .reshape(width, 32) * step,
                     "bias": jnp.full((8,), float(step))},
          "rng": jnp.asarray([step, 7], jnp.uint32),
          "position": {"step": np.asarray(step, np.int64)}}


@pytest.fixture(scope="module")
def saved_series(tmp_path_factory):
  """A workdir with checkpoints 1, 2, 3 (written once, copied by `workdir`)."""
  workdir = str(tmp_path_factory.mktemp("series"))
  checkpointer = checkpoints.Checkpointer(workdir)
  for step in STEPS:
    checkpointer.save(step, tree_of_step(step))
  checkpointer.wait()
  checkpointer.close()
  return workdir


@pytest.fixture
def workdir(saved_series, tmp_path):
  path = str(tmp_path / "run")
  shutil.copytree(saved_series, path)
  return path


def step_dir(workdir, name=None):
  """workdir/checkpoints, or its entry `name`."""
  directory = os.path.join(workdir, checkpoints.CHECKPOINT_DIRNAME)
  return directory if name is None else os.path.join(directory, str(name))


def truncate_array_data(workdir, step):
  """Halves the largest array data file of the checkpoint (a partly written file)."""
  data_dir = os.path.join(step_dir(workdir, step), "default", "ocdbt.process_0", "d")
  largest = max((os.path.join(data_dir, name) for name in os.listdir(data_dir)),
                key=os.path.getsize)
  with open(largest, "r+b") as file:
    file.truncate(os.path.getsize(largest) // 2)


def empty_metadata(workdir, step):
  open(os.path.join(step_dir(workdir, step), "default", "_METADATA"), "w").close()


def restore_newest(workdir, **kwargs):
  checkpointer = checkpoints.Checkpointer(workdir)
  try:
    return checkpointer.restore_newest_valid(tree_of_step(0), **kwargs)
  finally:
    checkpointer.close()


def assert_tree_of_step(tree, step):
  expected = tree_of_step(step)
  np.testing.assert_array_equal(tree["params"]["kernel"], expected["params"]["kernel"])
  np.testing.assert_array_equal(tree["rng"], expected["rng"])
  assert int(tree["position"]["step"]) == step


def test_intact_series_restores_the_newest(workdir):
  result = restore_newest(workdir)
  assert result.step == 3 and result.skipped == [] and result.report_lines() == []
  assert_tree_of_step(result.tree, 3)


@pytest.mark.parametrize("damage, reason", [
    (truncate_array_data, "reading the arrays: ValueError: OUT_OF_RANGE"),
    (empty_metadata, "reading default/_METADATA: JSONDecodeError")])
def test_damaged_newest_falls_back_and_is_moved_aside(workdir, damage, reason):
  damage(workdir, 3)
  result = restore_newest(workdir)
  assert result.step == 2
  assert_tree_of_step(result.tree, 2)
  [skipped] = result.skipped
  assert skipped.step == 3 and reason in skipped.reason
  assert "\n" not in skipped.reason and len(skipped.reason) <= 300
  assert skipped.moved_to == step_dir(workdir, "3.corrupt-1")
  assert os.path.isdir(skipped.moved_to) and not os.path.exists(step_dir(workdir, 3))
  lines = result.report_lines()
  assert len(lines) == 2 and "step 3 is damaged" in lines[0]
  assert skipped.moved_to in lines[0] and "step 2" in lines[1]
  # Orbax no longer sees the damaged step; a second restore is clean.
  assert restore_newest(workdir).skipped == []


def test_moved_aside_checkpoint_survives_max_to_keep_and_its_step_saves_again(
    workdir):
  empty_metadata(workdir, 3)
  restore_newest(workdir)
  checkpointer = checkpoints.Checkpointer(workdir, max_to_keep=3)
  for step in (3, 4, 5):
    checkpointer.save(step, tree_of_step(step))
  checkpointer.wait()
  assert checkpointer.all_steps() == [3, 4, 5]
  checkpointer.close()
  assert os.path.isdir(step_dir(workdir, "3.corrupt-1"))
  assert_tree_of_step(restore_newest(workdir).tree, 5)
  # The new step 5 damaged as well: a second name, the first is kept.
  truncate_array_data(workdir, 5)
  result = restore_newest(workdir)
  assert result.step == 4 and result.skipped[0].moved_to == step_dir(workdir,
                                                                     "5.corrupt-1")
  empty_metadata(workdir, 4)
  shutil.copytree(step_dir(workdir, 4), step_dir(workdir, 5))  # Damaged 5 again.
  result = restore_newest(workdir)
  assert result.step == 3
  assert [s.moved_to for s in result.skipped] == [step_dir(workdir, "5.corrupt-2"),
                                                  step_dir(workdir, "4.corrupt-1")]


def test_read_only_restore_changes_nothing_on_disk(workdir):
  empty_metadata(workdir, 3)
  os.makedirs(step_dir(workdir, "4" + checkpoints.TEMPORARY_SUFFIX))
  result = restore_newest(workdir, read_only=True)
  assert result.step == 2 and result.skipped[0].moved_to is None
  assert not result.discarded_temporaries[0].deleted
  assert sorted(os.listdir(step_dir(workdir))) == [
      "1", "2", "3", "4" + checkpoints.TEMPORARY_SUFFIX]
  assert "left in place" in result.report_lines()[1]


def test_nothing_restores_is_a_short_error_listing_each_and_moves_nothing(workdir):
  truncate_array_data(workdir, 3)
  empty_metadata(workdir, 2)
  shutil.rmtree(os.path.join(step_dir(workdir, 1), "default"))
  make_interrupted_save(workdir, 4)
  with pytest.raises(checkpoints.CheckpointCorruptError) as raised:
    restore_newest(workdir)
  lines = str(raised.value).splitlines()
  assert len(lines) == 4 and step_dir(workdir) in lines[0]
  assert [line.split(":")[0].strip() for line in lines[1:]] == [
      "step 3", "step 2", "step 1"]
  assert "OUT_OF_RANGE" in lines[1] and "JSONDecodeError" in lines[2]
  assert "no 'default' directory" in lines[3]
  assert sorted(os.listdir(step_dir(workdir))) == [
      "1", "2", "3", "4" + checkpoints.TEMPORARY_SUFFIX]


def make_interrupted_save(workdir, step):
  """What orbax 0.12.8 leaves when killed mid-save (seen by killing a real save)."""
  path = step_dir(workdir, f"{step}{checkpoints.TEMPORARY_SUFFIX}")
  inner = os.path.join(path, f"default{checkpoints.TEMPORARY_SUFFIX}",
                       "ocdbt.process_0", "d")
  os.makedirs(inner)
  with open(os.path.join(path, "_CHECKPOINT_METADATA"), "w") as file:
    file.write('{"init_timestamp_nsecs": 1}')
  with open(os.path.join(inner, "0123abcd"), "wb") as file:
    file.write(b"\0" * 100)
  return path


def test_interrupted_first_save_is_reported_and_deleted(tmp_path):
  workdir = str(tmp_path)
  os.makedirs(step_dir(workdir))
  path = make_interrupted_save(workdir, 62)
  result = restore_newest(workdir)
  assert result.step is None and result.tree is None and result.skipped == []
  assert result.discarded_temporaries == [checkpoints.DiscardedTemporary(62, path,
                                                                        True)]
  assert not os.path.exists(path)
  [line] = result.report_lines()
  assert "step 62 was never completed" in line and path in line
  assert restore_newest(workdir).report_lines() == []


def test_interrupted_save_next_to_good_checkpoints(workdir):
  path = make_interrupted_save(workdir, 4)
  result = restore_newest(workdir)
  assert result.step == 3 and [t.step for t in result.discarded_temporaries] == [4]
  assert not os.path.exists(path)
  checkpointer = checkpoints.Checkpointer(workdir)
  assert checkpointer.all_steps() == [1, 2, 3]
  checkpointer.close()


@pytest.mark.parametrize("restore", ["newest_valid", "step"])
def test_structure_mismatch_is_a_short_error_without_fallback(workdir, restore):
  empty_metadata(workdir, 3)  # Damaged newest: skipped, then 2 mismatches.
  target = tree_of_step(0, width=5)  # kernel (5, 32) instead of (32, 32)
  target["params"]["extra"] = jnp.zeros((2,))
  del target["rng"]
  checkpointer = checkpoints.Checkpointer(workdir)
  with pytest.raises(checkpoints.CheckpointMismatchError) as raised:
    if restore == "newest_valid":
      checkpointer.restore_newest_valid(target)
    else:
      checkpointer.restore(target, step=2)
  checkpointer.close()
  message = str(raised.value)
  assert "step 2" in message and len(message.splitlines()) == 4
  assert "params/kernel: saved (32, 32), expected (5, 32)" in message
  assert "params/extra: expected (2,), not in the checkpoint" in message
  assert "rng: saved (2,), not expected" in message
  # Nothing was moved: the damaged 3 is kept where it was, 1 was not touched.
  assert sorted(os.listdir(step_dir(workdir))) == ["1", "2", "3"]


def test_restore_of_a_damaged_step_names_it_in_one_line(workdir):
  truncate_array_data(workdir, 3)
  checkpointer = checkpoints.Checkpointer(workdir)
  with pytest.raises(checkpoints.CheckpointCorruptError,
                     match=r"^Checkpoint step 3 \(.*/3\) cannot be read: reading the arrays: "
                           r"ValueError: "
                           r"OUT_OF_RANGE[^\n]*$") as raised:
    checkpointer.restore(tree_of_step(0))
  # Raised outside orbax's exception: Python prints no chained orbax traceback.
  assert raised.value.__context__ is None and raised.value.__cause__ is None
  with pytest.raises(FileNotFoundError, match=r"No checkpoint 7 .*\[1, 2, 3\]"):
    checkpointer.restore(tree_of_step(0), step=7)
  assert_tree_of_step(checkpointer.restore(tree_of_step(0), step=2), 2)
  checkpointer.close()
