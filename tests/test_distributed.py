"""Tests for tripjax/training/distributed.py: two local CPU processes (gloo) train,
checkpoint, restore and stop on a signal like one process; flag checks and cluster
detection."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import distributed_worker
from tripjax import jax_internals
from tripjax.training import distributed
from tripjax.training import sharding

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CLUSTER_VARIABLES = ("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "TPU_")


def _free_port():
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _environment_without_cluster(**extra):
  environment = {name: value for name, value in os.environ.items()
                 if not name.startswith(_CLUSTER_VARIABLES)}
  environment.update({"JAX_PLATFORMS": "cpu",
                      "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **extra})
  return environment


def _run_processes(commands_and_environments, timeout=150):
  """Runs the processes together; kills all of them if any hangs (a collective)."""
  processes = [subprocess.Popen(command, cwd=REPO_ROOT, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
               for command, environment in commands_and_environments]
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=timeout)[0])
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
      process.communicate()
    pytest.fail(f"A process did not finish in {timeout} s (hung collective?).")
  return [(process.returncode, output) for process, output in zip(processes, outputs)]


def test_two_processes_train_checkpoint_and_restore_like_one(tmp_path):
  """Process 0 gets the three flags; process 1 finds the same settings in a
  (simulated) SLURM job step, as `jax.distributed.initialize()` reads them."""
  port = _free_port()
  worker = [sys.executable, "-m", "tests.distributed_worker",
            f"--workdir={tmp_path / 'run'}"]
  flags = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
           "--process_id=0"]
  slurm = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "localhost",
           "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
           "JAX_COORDINATOR_PORT": str(port)}
  results = _run_processes([
      (worker + flags + [f"--out={tmp_path / 'out0.npz'}"],
       _environment_without_cluster()),
      (worker + [f"--out={tmp_path / 'out1.npz'}"],
       _environment_without_cluster(**slurm))])
  for returncode, output in results:
    assert returncode == 0, output[-3000:]
  outputs = [np.load(tmp_path / f"out{index}.npz") for index in (0, 1)]

  params, batch = distributed_worker.problem()  # One process, the whole batch.
  step = jax.jit(distributed_worker.train_step)
  after_one, first_loss = step(params, batch)
  after_two, second_loss = step(after_one, batch)
  for index, output in enumerate(outputs):
    assert int(output["process_count"]) == 2 and int(output["device_count"]) == 4
    assert list(output["rows"]) == [4 * index, 4 * index + 4]
    np.testing.assert_array_equal(output["gathered_x"], batch["x"])
    np.testing.assert_allclose(output["losses"], [first_loss, second_loss],
                               rtol=1e-6)
    np.testing.assert_allclose(output["w"], after_two["w"], rtol=1e-6)
    np.testing.assert_allclose(output["b"], after_two["b"], rtol=1e-6)
    # The damaged step 2 was skipped by both processes, moved aside once.
    assert int(output["restored_step"]) == 1 and list(output["skipped"]) == [2]
    np.testing.assert_allclose(output["restored_w"], after_one["w"], rtol=1e-6)
    assert output["moved_to"][0] == str(tmp_path / "run" / "checkpoints" /
                                        "2.corrupt-1")
    assert bool(output["any_process"]) and not bool(output["all_processes"])
    # SIGTERM reached process 1 before step 1: both stop after step 1.
    assert list(output["stops"]) == [False, True, True]
    assert str(output["stop_signal"]) == "SIGTERM"
    assert bool(output["stop_requested_here"]) == (index == 1)
    assert int(output["stop_exit_code"]) == 143
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["1", "2.corrupt-1"]
  print("StopRequest.should_stop per step, 2 CPU processes: "
        f"{float(outputs[0]['sync_seconds']) * 1e3:.2f} ms (all-gather), "
        f"{float(outputs[0]['agreed_seconds']) * 1e6:.1f} us (after agreement)")


def test_single_process_initialize_is_a_no_op(monkeypatch):
  for name in list(os.environ):
    if name.startswith(_CLUSTER_VARIABLES):
      monkeypatch.delenv(name)
  distributed.initialize()  # No cluster: one process.
  distributed.initialize("127.0.0.1:1234", 1, 0)  # One process by flags.
  slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node001", "SLURM_NTASKS": "1",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
  for name, value in slurm.items():
    monkeypatch.setenv(name, value)
  assert jax_internals.cluster_process_count() == 1
  distributed.initialize()  # A one-task SLURM job: one process.
  assert not jax.distributed.is_initialized() and jax.process_count() == 1
  assert distributed.is_main_process()
  assert distributed.process_slice(8) == slice(0, 8)
  assert distributed.any_process(True) and not distributed.all_processes(False)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  batch = sharding.shard_batch({"x": np.arange(6.0).reshape(3, 2)}, mesh)
  np.testing.assert_array_equal(distributed.to_host(batch)["x"],
                                np.arange(6.0).reshape(3, 2))
  state = {"key": jax.random.key(3), "raw_key": jax.random.PRNGKey(4),
           "w": np.arange(3.0)}
  replicated = sharding.replicate(state, mesh)
  assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(replicated))
  assert jax.random.key_data(replicated["key"]).tolist() == jax.random.key_data(
      state["key"]).tolist()
  np.testing.assert_array_equal(distributed.to_host(replicated["raw_key"]),
                                state["raw_key"])
  assert sharding.replicate(replicated, mesh)["w"] is replicated["w"]


@pytest.mark.parametrize("arguments, message", [
    (("127.0.0.1:1234", None, None), r"got --coordinator_address='127.0.0.1:1234' but "
                                     r"not --num_processes, --process_id"),
    ((None, 2, 1), r"not --coordinator_address\. Give all three"),
    (("127.0.0.1", 2, 0), r"--coordinator_address='127.0.0.1' must be HOST:PORT"),
    (("127.0.0.1:1234", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
])
def test_bad_flags_are_clear_errors(arguments, message):
  with pytest.raises(ValueError, match=message):
    distributed.initialize(*arguments)
  assert not jax.distributed.is_initialized()
