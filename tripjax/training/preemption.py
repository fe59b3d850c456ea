"""Stopping cleanly on SIGTERM/SIGINT: finish the step, save a checkpoint, exit.

Cluster schedulers and preemptible VMs send SIGTERM some seconds before SIGKILL;
Ctrl-C sends SIGINT. Inside `with StopRequest() as stop:` both only set a flag;
the training loop asks `stop.should_stop(step)` after every step and, when it says
so, saves a checkpoint at that step and raises `stop.stopped(step)`, whose message
is the exit line and whose `exit_code` is the shell's for that signal (143 for
SIGTERM, 130 for SIGINT). A second Ctrl-C raises KeyboardInterrupt at once.

With several processes (`tripjax.training.distributed`) a signal may reach only
some of them; `should_stop` shares the flags (a tiny all-gather every
`sync_every_steps` steps), so all processes stop after the same step and save the
same checkpoint together. While the block runs, these handlers replace JAX's own
SIGTERM notifier of multi-process runs (`multihost_utils.reached_preemption_sync_point`
then never fires).
"""
import signal
import sys
import threading
from typing import Any, Sequence

import jax
import numpy as np

from tripjax.training import distributed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
  """Training stopped after a checkpoint because a stop signal arrived.

  Attributes:
    signal_name: "SIGTERM" or "SIGINT".
    step: the step that was saved.
    exit_code: 128 + the signal number (143 SIGTERM, 130 SIGINT), as shells report.
  """

  def __init__(self, signal_name: str, signal_number: int, step: int, where: str):
    self.signal_name = signal_name
    self.step = step
    self.exit_code = 128 + signal_number
    super().__init__(f"Stopped by {signal_name} at step {step}; saved a checkpoint "
                     f"there{where}. Run the same command to resume.")


class StopRequest:
  """A context in which SIGTERM and SIGINT request a stop instead of killing.

  Usage:

    with preemption.StopRequest() as stop:
      for step in ...:
        ...train one step...
        if stop.should_stop(step):
          save(step)
          raise stop.stopped(step)

  Outside the main thread (where Python cannot handle signals) it does nothing:
  `installed` is False and `requested` stays False.
  """

  def __init__(self, signals: Sequence[int] = STOP_SIGNALS,
               sync_every_steps: int = 1, announce: bool = True):
    """
    Args:
      signals: the signals that request a stop.
      sync_every_steps: with several processes, share the flags every this many
        steps (a collective; every process must call `should_stop` at every step).
      announce: print a line to stderr when a signal arrives.
    """
    if sync_every_steps < 1:
      raise ValueError(f"sync_every_steps must be >= 1; got {sync_every_steps}.")
    self._signals = tuple(signals)
    self._sync_every_steps = sync_every_steps
    self._announce = announce
    self._previous_handlers: dict[int, Any] = {}
    self._signal_number = 0  # The first stop signal this process received.
    self._agreed_signal_number = 0  # The stop signal all processes agreed on.
    self.installed = False

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is threading.main_thread():
      for signal_number in self._signals:
        self._previous_handlers[signal_number] = signal.signal(signal_number,
                                                               self._handle)
      self.installed = True
    return self

  def __exit__(self, *exc_info) -> None:
    for signal_number, previous in self._previous_handlers.items():
      # None: the previous handler was not installed from Python (e.g. JAX's
      # SIGTERM notifier); it cannot be reinstalled, the default is.
      signal.signal(signal_number, signal.SIG_DFL if previous is None else previous)
    self._previous_handlers = {}
    self.installed = False

  def _handle(self, signal_number, frame) -> None:
    del frame
    if self._signal_number:
      if signal_number == signal.SIGINT:  # A second Ctrl-C: stop at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
      return  # Already stopping (schedulers may send SIGTERM more than once).
    self._signal_number = signal_number
    if self._announce:
      force = ("press Ctrl-C again to stop at once" if signal_number == signal.SIGINT
               else "SIGKILL stops at once")
      sys.stderr.write(f"\nReceived {signal.Signals(signal_number).name}: stopping "
                       f"after this step with a checkpoint ({force}).\n")
      sys.stderr.flush()

  @property
  def requested(self) -> bool:
    """Whether a stop signal reached this process."""
    return bool(self._signal_number)

  @property
  def signal_name(self) -> str | None:
    """The signal that stopped (or will stop) the run, e.g. "SIGTERM"; None if none."""
    number = self._agreed_signal_number or self._signal_number
    return signal.Signals(number).name if number else None

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after `step`: the same answer on every process.

    With one process this is `requested` (no communication). With several, the
    flags are shared when `step` is a multiple of `sync_every_steps`; every process
    must call this after every step.
    """
    if self._agreed_signal_number:
      return True
    if jax.process_count() == 1:
      self._agreed_signal_number = self._signal_number
    elif step % self._sync_every_steps == 0:
      numbers = distributed.gather_from_processes(np.int32(self._signal_number))
      received = [int(number) for number in numbers if number]
      self._agreed_signal_number = received[0] if received else 0
    return bool(self._agreed_signal_number)

  def stopped(self, step: int, checkpoint_directory: str | None = None) -> Stopped:
    """The exception to raise once the checkpoint of `step` is saved."""
    number = self._agreed_signal_number or self._signal_number
    if not number:
      raise RuntimeError("No stop signal was received.")
    where = f" in {checkpoint_directory}" if checkpoint_directory else ""
    return Stopped(signal.Signals(number).name, number, step, where)
