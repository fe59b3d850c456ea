"""Tests for tripjax/training/preemption.py with real signals (this process and a
subprocess); the multi-process agreement is tested in tests/test_distributed.py."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tripjax.training import preemption

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for(condition, seconds=5.0):
  deadline = time.monotonic() + seconds
  while not condition() and time.monotonic() < deadline:
    time.sleep(0.001)
  return condition()


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143),
                                                      (signal.SIGINT, 130)])
def test_signal_sets_the_flag_and_handlers_are_restored(signal_number, exit_code,
                                                         capfd):
  previous = {number: signal.getsignal(number) for number in preemption.STOP_SIGNALS}
  with preemption.StopRequest() as stop:
    assert stop.installed and not stop.requested and not stop.should_stop(1)
    os.kill(os.getpid(), signal_number)
    assert _wait_for(lambda: stop.requested)
    assert stop.should_stop(2) and stop.signal_name == signal_number.name
    stopped = stop.stopped(2, "/runs/a/checkpoints")
  assert {number: signal.getsignal(number)
          for number in preemption.STOP_SIGNALS} == previous
  assert stopped.exit_code == exit_code and stopped.step == 2
  assert str(stopped) == (f"Stopped by {signal_number.name} at step 2; saved a "
                          "checkpoint there in /runs/a/checkpoints. Run the same "
                          "command to resume.")
  assert f"Received {signal_number.name}: stopping after this step" in (
      capfd.readouterr().err)


def test_second_sigint_raises_keyboard_interrupt_and_sigterm_repeats_are_ignored():
  with preemption.StopRequest(announce=False) as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # Schedulers may repeat it.
    assert _wait_for(lambda: stop.requested) and stop.signal_name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while stopping: at once.
      _wait_for(lambda: False, seconds=2.0)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_it_does_nothing():
  seen = {}

  def enter_in_thread():
    with preemption.StopRequest() as stop:
      seen["installed"] = stop.installed
      seen["handler"] = signal.getsignal(signal.SIGTERM)

  before = signal.getsignal(signal.SIGTERM)
  thread = threading.Thread(target=enter_in_thread)
  thread.start()
  thread.join()
  assert seen == {"installed": False, "handler": before}
  with preemption.StopRequest() as stop:
    with pytest.raises(RuntimeError, match="No stop signal"):
      stop.stopped(3)
  with pytest.raises(ValueError, match="sync_every_steps must be >= 1; got 0"):
    preemption.StopRequest(sync_every_steps=0)


_TRAINER = textwrap.dedent("""
    import sys, time
    from tripjax.training import preemption
    saved = []
    try:
      with preemption.StopRequest() as stop:
        print("READY", flush=True)
        for step in range(1, 100000):
          time.sleep(0.005)  # one training step
          if stop.should_stop(step):
            saved.append(step)  # the checkpoint of this step
            raise stop.stopped(step)
    except preemption.Stopped as stopped:
      print(stopped, flush=True)
      print("SAVED", saved, flush=True)
      sys.exit(stopped.exit_code)
""")


def test_sigterm_to_a_training_process_saves_and_exits_143():
  process = subprocess.Popen([sys.executable, "-c", _TRAINER], cwd=REPO_ROOT,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert process.stdout.readline().strip() == "READY"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == 143, stderr
  stop_line, saved_line = stdout.splitlines()
  step = int(stop_line.split(" at step ")[1].split(";")[0])
  assert stop_line.startswith("Stopped by SIGTERM at step ") and step >= 1
  assert saved_line == f"SAVED [{step}]"
  assert "Received SIGTERM: stopping after this step" in stderr
