"""Tests for tripjax/training/metric_writer.py: metrics.jsonl and the TensorBoard event
files, read back with an independent TFRecord parser (no TensorBoard needed)."""
import io
import math
import os
import struct
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tripjax.training import metric_writer


def read_events(directory):
  """Every Event in directory/*tfevents*, files in name order, CRCs checked."""
  metric_writer._import_tensorboardx()  # pylint: disable=protected-access
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=import-outside-toplevel
  events = []
  for name in sorted(os.listdir(directory)):
    if "tfevents" not in name:
      continue
    with open(os.path.join(directory, name), "rb") as file:
      data = file.read()
    offset = 0
    while offset < len(data):  # TFRecord: length, crc(length), payload, crc(payload)
      header = data[offset:offset + 8]
      (length,) = struct.unpack("<Q", header)
      assert struct.unpack("<I", data[offset + 8:offset + 12])[0] == masked_crc32c(
          header)
      payload = data[offset + 12:offset + 12 + length]
      assert struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])[
          0] == masked_crc32c(payload)
      event = event_pb2.Event()
      event.ParseFromString(payload)
      events.append(event)
      offset += 16 + length
  return events


def tensorboard_view(events):
  """{tag: {step: value}} as TensorBoard shows it: a record at step s, or a
  SessionLog.START at s (all tags), replaces earlier records at steps >= s."""
  view = {}
  for event in events:
    if event.HasField("session_log") and event.session_log.status == 1:  # START
      for series in view.values():
        for step in [s for s in series if s >= event.step]:
          del series[step]
    for value in event.summary.value:
      series = view.setdefault(value.tag, {})
      for step in [s for s in series if s >= event.step]:
        del series[step]
      series[event.step] = (value.simple_value if value.HasField("simple_value")
                            else value.image.encoded_image_string)
  return view


def test_scalars_and_images_reach_tensorboard_and_jsonl(tmp_path):
  torch_was_imported = "torch" in sys.modules
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, size=(5, 7, 1), dtype=np.uint8)
  rgb = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
  with metric_writer.MetricWriter(str(tmp_path)) as writer:
    writer.write(1, 1, "train", {"loss": np.float32(1.5), "elbo": jnp.float32(-2.25),
                                 "refit": True, "bad": float("nan"),
                                 "big": -np.inf, "count": 3, "note": "text"})
    writer.write(2, 1, "eval", {"test_elbo": np.float64(-3.0)})
    writer.write_images(2, {"reconstructions": gray, "prior_samples": rgb})
  view = tensorboard_view(read_events(str(tmp_path)))
  assert set(view) == {"train/loss", "train/elbo", "train/refit", "train/bad",
                       "train/big", "train/count", "eval/test_elbo",
                       "reconstructions", "prior_samples"}  # No "train/note".
  assert view["train/loss"] == {1: 1.5} and view["train/elbo"] == {1: -2.25}
  assert view["train/refit"] == {1: 1.0} and view["train/count"] == {1: 3.0}
  assert math.isnan(view["train/bad"][1]) and view["train/big"] == {1: -math.inf}
  assert view["eval/test_elbo"] == {2: -3.0}
  decoded = np.asarray(Image.open(io.BytesIO(view["reconstructions"][2])))
  np.testing.assert_array_equal(decoded, np.repeat(gray, 3, axis=-1))  # Gray as RGB.
  decoded = np.asarray(Image.open(io.BytesIO(view["prior_samples"][2])))
  np.testing.assert_array_equal(decoded, rgb)
  records = writer.read()  # metrics.jsonl stays the source of truth.
  assert records[0]["refit"] is True and records[0]["bad"] == "nan"
  assert records[0]["note"] == "text" and records[1]["split"] == "eval"
  if not torch_was_imported:
    assert "torch" not in sys.modules


def test_resumed_run_replaces_the_repeated_steps_in_tensorboard(tmp_path):
  workdir = str(tmp_path)
  killed = metric_writer.MetricWriter(workdir)  # Never closed: a killed run.
  for step in range(1, 6):
    killed.write(step, 1, "train", {"loss": float(step)})
  killed.write(4, 1, "eval", {"test_elbo": -1.0})
  resumed = metric_writer.MetricWriter(workdir)  # The same second: a second file.
  resumed.drop_after(3)  # Resumed from the checkpoint at step 3.
  for step in range(4, 7):
    resumed.write(step, 1, "train", {"loss": 10.0 * step})
  resumed.close()
  assert [(r["step"], r["loss"]) for r in resumed.read() if r["split"] == "train"] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]
  assert len([name for name in os.listdir(workdir) if "tfevents" in name]) == 2
  events = read_events(workdir)
  [marker] = [event for event in events if event.HasField("session_log")]
  assert marker.step == 4 and marker.session_log.status == 1  # START
  view = tensorboard_view(events)
  assert view["train/loss"] == {1: 1.0, 2: 2.0, 3: 3.0, 4: 40.0, 5: 50.0, 6: 60.0}
  assert view["eval/test_elbo"] == {}  # Step 4 of the killed run is hidden.
  killed.close()


def test_read_only_use_writes_no_event_file_and_bad_images_are_errors(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  assert writer.read() == []
  writer.close()
  assert os.listdir(tmp_path) == []
  plain = metric_writer.MetricWriter(str(tmp_path), tensorboard=False)
  plain.write(1, 1, "train", {"loss": 1.0})
  plain.write_images(1, {"grid": np.zeros((2, 2, 3), np.uint8)})
  assert os.listdir(tmp_path) == [metric_writer.METRICS_FILENAME]
  with pytest.raises(ValueError, match=r"'grid' must be \(H, W, C\) uint8.*float32"):
    writer.write_images(1, {"grid": np.zeros((2, 2, 3), np.float32)})
  writer.close()
