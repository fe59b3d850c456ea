"""One run per workdir: a lock file that refuses a second run while the first lives.

Two runs writing the same workdir interleave their checkpoints and metrics. A run
holds `workdir/run.lock`, created atomically (O_EXCL) with its host, pid and start
times, and a heartbeat thread refreshes the file's mtime while it runs. A second run
finds the file and stops with `WorkdirLockedError` (one line naming the holder; the
CLI exits 2). A lock whose holder is gone is taken over with a one-line notice: on
the same host (same hostname and pid namespace) when the pid no longer runs or now
belongs to another process (its /proc start time differs); from another host, which
cannot see the pid, when the mtime is older than `stale_seconds` (so host clocks and
the shared filesystem's must agree to well within that). The takeover renames the
stale file aside and checks it is the one judged, so two runs taking over at once
cannot both win. Multi-host runs lock from process 0 only (`enabled=False` elsewhere).
"""
from __future__ import annotations

from collections.abc import Callable
import json
import os
import secrets
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any, NamedTuple

LOCK_FILENAME = "run.lock"

# Exit code the CLI gives a run refused by a live lock.
EXIT_LOCKED = 2

# Tries of the whole acquire (a taker that loses a race re-reads the lock), and the
# pause before rereading a lock file that is unreadable but fresh (being written).
_MAX_ATTEMPTS = 6
_UNREADABLE_RETRY_SECONDS = 0.02

_MAX_PID = 2**31 - 1
_MAX_LOCK_BYTES = 65536

# Lock paths (realpath) held or being acquired by WorkdirLock objects of this
# process: a lock file naming this pid that is not among them was left by an
# earlier process that had the same pid.
_HELD_PATHS: set[str] = set()
_HELD_PATHS_LOCK = threading.Lock()


def _print_to_stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


class LockHolder(NamedTuple):
  """What a lock file says about the run holding it.

  Attributes:
    host: the holder's hostname; None when the file is unreadable.
    pid: the holder's process id; None when the file is unreadable.
    started: unix time the holder took the lock.
    process_start: the holder's start time in clock ticks since boot (field 22 of
      /proc/<pid>/stat), None where unreadable; tells a reused pid apart.
    refreshed: the lock file's mtime (unix time), which the heartbeat refreshes.
    pid_namespace: the holder's pid namespace (/proc/self/ns/pid link), None where
      unreadable; containers that share a hostname but not pids differ here.
  """
  host: str | None
  pid: int | None
  started: float | None
  process_start: int | None
  refreshed: float
  pid_namespace: str | None = None


class WorkdirLockedError(Exception):
  """A live run holds the workdir's lock; the message is one line naming it.

  Attributes:
    workdir: the workdir asked for.
    host: the holder's hostname (None when the lock file is unreadable).
    pid: the holder's process id (None when the lock file is unreadable).
    started: unix time the holder took the lock, if known.
    refreshed_seconds_ago: seconds since the holder last refreshed the lock.
    exit_code: the command-line exit code for this error (2).
  """

  exit_code = EXIT_LOCKED

  def __init__(self, workdir: str, host: str | None, pid: int | None,
               started: float | None, refreshed_seconds_ago: float | None, *,
               same_process: bool = False):
    self.workdir = workdir
    self.host = host
    self.pid = pid
    self.started = started
    self.refreshed_seconds_ago = refreshed_seconds_ago
    if host is None and pid is None:
      details = ["holder unknown: the lock file is unreadable"]
    else:
      details = [f"host {host}", f"pid {pid}"]
    if started is not None:
      details.append(f"started {_format_time(started)}")
    if refreshed_seconds_ago is not None:
      details.append(f"lock refreshed {max(0, round(refreshed_seconds_ago))} s ago")
    holder = ", ".join(details)
    if same_process:
      message = (f"{workdir} is already in use by this process ({holder}); one "
                 "process cannot run the same workdir twice, use another --workdir.")
    else:
      message = (f"{workdir} is in use by another run ({holder}); wait for it to "
                 "finish or stop it, or use another --workdir.")
    super().__init__(message)


def lock_path(workdir: str) -> str:
  """The lock file of `workdir`."""
  return os.path.join(workdir, LOCK_FILENAME)


def read_holder(workdir: str) -> LockHolder | None:
  """The holder named by `workdir`'s lock file, or None if there is no lock file.

  An unreadable file (empty, garbled, wrong fields) gives host and pid None.
  """
  snapshot = _read_lock_file(lock_path(workdir))
  return None if snapshot is None else snapshot.holder


class WorkdirLock:
  """Holds `workdir/run.lock` for the duration of a run.

  Usage:

    with workdir_lock.WorkdirLock(workdir, enabled=distributed.is_main_process()):
      ...train...

  Acquiring creates the workdir if needed, raises `WorkdirLockedError` if a live
  run holds it, takes over a lock left by a dead one (logging one line), and starts
  a daemon thread that refreshes the lock's mtime every `refresh_seconds`.
  Releasing (also when the block raises) stops the thread, deletes the lock file if
  it is still this lock's, and removes the directories acquiring created if they
  are empty, so a run that failed at startup leaves nothing behind. Both are
  idempotent.

  Args:
    workdir: the run's directory.
    enabled: False makes every method a no-op (the non-zero processes of a
      multi-host run, which share process 0's lock).
    refresh_seconds: how often the holder refreshes the lock's mtime; an
      unreadable lock file older than this is taken to be a crashed run's.
    stale_seconds: a lock from another host not refreshed for this long is taken
      over; must exceed `refresh_seconds`, preferably by several refreshes.
    log: prints the takeover notice and heartbeat warnings (default: stderr).
  """

  def __init__(self, workdir: str, *, enabled: bool = True,
               refresh_seconds: float = 30.0, stale_seconds: float = 300.0,
               log: Callable[[str], None] = _print_to_stderr):
    if refresh_seconds <= 0 or stale_seconds <= refresh_seconds:
      raise ValueError(f"Need 0 < refresh_seconds < stale_seconds, got "
                       f"{refresh_seconds} and {stale_seconds}.")
    self.workdir = workdir
    self.path = lock_path(workdir)
    self.enabled = enabled
    self.refresh_seconds = refresh_seconds
    self.stale_seconds = stale_seconds
    self.log = log
    self._key = ""
    self._file_descriptor: int | None = None
    self._identity: tuple[int, int] = (0, 0)
    self._record: dict[str, Any] = {}
    self._created_directories: list[str] = []
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  @property
  def held(self) -> bool:
    """Whether this object holds the lock now."""
    return self._file_descriptor is not None

  def holder(self) -> LockHolder | None:
    """The holder named by the lock file now (None without a lock file)."""
    return read_holder(self.workdir)

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, error_type: type[BaseException] | None,
               error: BaseException | None,
               traceback: TracebackType | None) -> None:
    self.release()

  def acquire(self) -> None:
    """Takes the lock (see the class docstring); a no-op if already held.

    Raises:
      WorkdirLockedError: a live run holds the workdir, or another lock object of
        this process does.
    """
    if not self.enabled or self.held:
      return
    key = os.path.realpath(self.path)
    with _HELD_PATHS_LOCK:
      if key in _HELD_PATHS:
        raise self._error(self.holder(), same_process=True)
      _HELD_PATHS.add(key)
    self._key = key
    try:
      self._created_directories = _make_directories(self.workdir)
      self._take()
      self._stop.clear()
      self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"workdir-lock-heartbeat {self.workdir}")
      self._thread.start()
    except BaseException:  # also KeyboardInterrupt right after creating the file
      if self.held:
        self.release()
      else:
        self._forget()
      raise

  def release(self) -> None:
    """Gives the lock back (see the class docstring); a no-op if not held.

    In a child forked while the lock was held it only closes the inherited file:
    the lock stays the parent's.
    """
    file_descriptor = self._file_descriptor
    if file_descriptor is None:
      return
    self._file_descriptor = None
    if os.getpid() != self._record["pid"]:  # a forked child (no heartbeat thread)
      os.close(file_descriptor)
      self._thread = None
      self._created_directories = []
      self._forget()
      return
    self._stop.set()
    if self._thread is not None and self._thread.is_alive():
      self._thread.join()  # before closing: it must not touch a reused descriptor
    self._thread = None
    os.close(file_descriptor)
    snapshot = _read_lock_file(self.path)
    if snapshot is not None and self._is_mine(snapshot.holder):
      try:
        os.unlink(self.path)
      except FileNotFoundError:
        pass
      except OSError as error:
        self.log(f"Could not delete {self.path}: {error}")
    self._forget()

  def _forget(self) -> None:
    """Drops this lock from the process's held paths; removes created directories."""
    with _HELD_PATHS_LOCK:
      _HELD_PATHS.discard(self._key)
    self._key = ""
    for directory in self._created_directories:  # deepest first
      try:
        os.rmdir(directory)
      except OSError:
        break
    self._created_directories = []

  def _is_mine(self, holder: LockHolder) -> bool:
    return (holder.host, holder.pid, holder.started) == (
        self._record["host"], self._record["pid"], self._record["started"])

  def _error(self, holder: LockHolder | None, *,
             same_process: bool = False) -> WorkdirLockedError:
    if holder is None:  # only while another lock object of this process acquires
      return WorkdirLockedError(self.workdir, socket.gethostname(), os.getpid(),
                                None, None, same_process=same_process)
    return WorkdirLockedError(self.workdir, holder.host, holder.pid, holder.started,
                              time.time() - holder.refreshed,
                              same_process=same_process)

  def _take(self) -> None:
    """Creates the lock file, taking over a stale one; raises if a live run holds it."""
    holder: LockHolder | None = None
    for attempt in range(_MAX_ATTEMPTS):
      notice = ""
      judged = _read_lock_file(self.path)
      if judged is not None:
        holder = judged.holder
        reason = self._stale_reason(holder)
        if reason is None:
          if holder.pid is None and attempt < _MAX_ATTEMPTS - 1:
            time.sleep(_UNREADABLE_RETRY_SECONDS)  # perhaps being written
            continue
          raise self._error(holder)
        if not _remove_stale(self.path, judged):
          continue  # the file changed under us: judge again
        if holder.pid is None:
          notice = f"Taking over {self.path} ({reason})."
        else:
          notice = (f"Taking over {self.path} left by pid {holder.pid} on host "
                    f"{holder.host} ({reason}).")
      if self._create():
        if notice:
          self.log(notice)
        return
    if holder is None:  # the workdir kept vanishing under us
      raise WorkdirLockedError(self.workdir, None, None, None, None)
    raise self._error(holder)

  def _stale_reason(self, holder: LockHolder) -> str | None:
    """Why `holder`'s lock is stale, or None if its run may still be alive."""
    age = time.time() - holder.refreshed
    if holder.host is None or holder.pid is None:
      if age > self.refresh_seconds:
        return f"unreadable, not refreshed for {round(age)} s"
      return None
    if not _same_host(holder):
      if age > self.stale_seconds:
        return f"lock not refreshed for {round(age)} s"
      return None
    if holder.pid == os.getpid():
      # No other lock object of this process holds it (acquire checked).
      return "an earlier process with this pid, no longer running"
    try:
      os.kill(holder.pid, 0)
    except ProcessLookupError:
      return "no longer running"
    except PermissionError:
      pass  # alive, another user's
    status = _process_status(holder.pid)
    if status is not None:
      state, process_start = status
      if state in ("Z", "X"):
        return "no longer running"
      if holder.process_start is not None and process_start != holder.process_start:
        return "no longer running; its pid now belongs to another process"
    return None

  def _create(self) -> bool:
    """Creates the lock file with O_EXCL; False if one exists already."""
    record = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": time.time(), "process_start": _process_start(os.getpid()),
              "pid_namespace": _pid_namespace()}
    try:
      file_descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    except FileNotFoundError:  # the workdir was removed meanwhile
      os.makedirs(self.workdir, exist_ok=True)
      return False
    try:
      data = (json.dumps(record) + "\n").encode()
      while data:
        data = data[os.write(file_descriptor, data):]
      os.fsync(file_descriptor)
      stat = os.fstat(file_descriptor)
    except BaseException:
      os.close(file_descriptor)
      os.unlink(self.path)
      raise
    self._file_descriptor = file_descriptor
    self._identity = (stat.st_dev, stat.st_ino)
    self._record = record
    return True

  def _heartbeat(self) -> None:
    """Refreshes the lock's mtime until released; warns once if the lock is lost."""
    warned = False
    while not self._stop.wait(self.refresh_seconds):
      file_descriptor = self._file_descriptor
      if file_descriptor is None:
        return
      try:
        if os.utime in os.supports_fd:
          os.utime(file_descriptor)  # this file even if the path now names another
        else:
          os.utime(self.path)
        stat = os.stat(self.path)  # (our open file keeps its inode from reuse)
        lost = (stat.st_dev, stat.st_ino) != self._identity
      except FileNotFoundError:
        lost = True
      except OSError as error:
        if not warned:
          self.log(f"Warning: could not refresh {self.path}: {error}")
          warned = True
        continue
      if lost and not warned:
        self.log(f"Warning: {self.path} was removed or replaced while this run "
                 f"held it; another run may be using {self.workdir}.")
        warned = True


def _format_time(timestamp: float) -> str:
  return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _make_directories(workdir: str) -> list[str]:
  """Creates `workdir` and missing parents; returns those created, deepest first."""
  missing = []
  path = os.path.abspath(workdir)
  while not os.path.lexists(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  os.makedirs(workdir, exist_ok=True)
  return missing


class _Snapshot(NamedTuple):
  """A lock file as read once: which file (device, inode, mtime), bytes, holder."""
  identity: tuple[int, int, int]
  data: bytes
  holder: LockHolder


def _read_lock_file(path: str) -> _Snapshot | None:
  """The lock file at `path`, read from one open file; None if there is none."""
  try:
    with open(path, "rb") as file:
      stat = os.fstat(file.fileno())
      data = file.read(_MAX_LOCK_BYTES)
  except FileNotFoundError:
    return None
  return _Snapshot((stat.st_dev, stat.st_ino, stat.st_mtime_ns), data,
                   _parse_holder(data, stat.st_mtime))


def _parse_holder(data: bytes, refreshed: float) -> LockHolder:
  """The holder a lock file's bytes name; host and pid None if they are unreadable."""
  unreadable = LockHolder(None, None, None, None, refreshed)
  try:
    record = json.loads(data)
  except ValueError:
    return unreadable
  if not isinstance(record, dict):
    return unreadable
  host, pid = record.get("host"), record.get("pid")
  started = record.get("started")
  process_start = record.get("process_start")
  pid_namespace = record.get("pid_namespace")
  if (not isinstance(host, str) or not host or not isinstance(pid, int)
      or isinstance(pid, bool) or not 0 < pid <= _MAX_PID):
    return unreadable
  if isinstance(started, bool) or not isinstance(started, (int, float)):
    started = None
  if not isinstance(process_start, int) or isinstance(process_start, bool):
    process_start = None
  if not isinstance(pid_namespace, str):
    pid_namespace = None
  return LockHolder(host, pid, started, process_start, refreshed, pid_namespace)


def _same_host(holder: LockHolder) -> bool:
  """Whether `holder`'s pid means a process this one can see."""
  if holder.host != socket.gethostname():
    return False
  namespace = _pid_namespace()
  return (holder.pid_namespace is None or namespace is None
          or holder.pid_namespace == namespace)


def _process_status(pid: int) -> tuple[str, int] | None:
  """(state, start time in ticks since boot) from /proc/<pid>/stat, if readable."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as file:
      text = file.read().decode(errors="replace")
  except OSError:
    return None
  # The command name (field 2) is in parentheses and may hold spaces or ")".
  fields = text[text.rfind(")") + 2:].split()
  try:
    return fields[0], int(fields[19])  # fields 3 and 22
  except (IndexError, ValueError):
    return None


def _process_start(pid: int) -> int | None:
  status = _process_status(pid)
  return None if status is None else status[1]


def _pid_namespace() -> str | None:
  try:
    return os.readlink("/proc/self/ns/pid")
  except OSError:
    return None


def _remove_stale(path: str, judged: _Snapshot) -> bool:
  """Removes the lock file at `path` if it is still the one `judged`.

  Renames it aside first and compares what it moved with what it judged (inode,
  mtime and bytes: a new file may reuse a deleted one's inode). So of several runs
  taking over the same stale lock one removes it; the others find they moved a
  winner's fresh lock, which they link back while the lock path is still free.
  """
  aside = f"{path}.stale-{os.getpid()}-{secrets.token_hex(4)}"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return False
  moved = _read_lock_file(aside)
  same = moved is not None and (moved.identity, moved.data) == (judged.identity,
                                                                 judged.data)
  if moved is not None and not same:
    try:
      os.link(aside, path)
    except FileExistsError:
      pass  # yet another run holds the lock path now; the moved lock is lost
    except OSError:  # no hard links here: rename back, unless the path is taken
      if not os.path.lexists(path):
        try:
          os.rename(aside, path)
        except OSError:
          pass
  try:
    os.unlink(aside)
  except FileNotFoundError:
    pass
  return same
