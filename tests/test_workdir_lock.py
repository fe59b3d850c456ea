"""Tests for tripjax/training/workdir_lock.py: live holders in this and other
processes, takeovers of dead ones' locks, the heartbeat and the cleanup on release."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tripjax.training import workdir_lock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = socket.gethostname()
SUBPROCESS_TIMEOUT_SECONDS = 60.0

# Prints READY, waits for a line on stdin, tries the lock of argv[1] and prints
# ACQUIRED <pid> or LOCKED <message>; a holder keeps the lock until stdin closes.
_WORKER = textwrap.dedent("""\
    import os
    import sys

    from tripjax.training import workdir_lock

    print("READY", flush=True)
    sys.stdin.readline()
    lock = workdir_lock.WorkdirLock(
        sys.argv[1], refresh_seconds=0.05, stale_seconds=5.0,
        log=lambda line: print("LOG", line, flush=True))
    try:
      lock.acquire()
    except workdir_lock.WorkdirLockedError as error:
      print("LOCKED", error, flush=True)
      sys.exit(2)
    print("ACQUIRED", os.getpid(), flush=True)
    sys.stdin.readline()
    lock.release()
""")


class _Worker:
  """A `_WORKER` subprocess whose output lines are read with a timeout."""

  def __init__(self, workdir):
    self.process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(workdir)], cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    self.lines = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.process.stdout:
      self.lines.put(line.rstrip("\n"))
    self.lines.put(None)

  def next_line(self):
    """The next output line; fails the test if none comes in time."""
    try:
      line = self.lines.get(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    except queue.Empty:
      pytest.fail(f"pid {self.process.pid} printed nothing in "
                  f"{SUBPROCESS_TIMEOUT_SECONDS} s")
    assert line is not None, f"pid {self.process.pid} exited early"
    return line

  def go(self):
    self.process.stdin.write("go\n")
    self.process.stdin.flush()

  def outcome(self):
    """(LOG lines, the ACQUIRED or LOCKED line)."""
    logs = []
    while (line := self.next_line()).startswith("LOG "):
      logs.append(line[len("LOG "):])
    return logs, line

  def stop(self):
    """Closes stdin (a holder releases and exits) and waits for the exit."""
    try:
      self.process.stdin.close()
      self.process.wait(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    finally:
      self.process.kill()
      self.process.wait()


def _lock(workdir, logs=None, **kwargs):
  kwargs = dict(dict(refresh_seconds=0.05, stale_seconds=5.0), **kwargs)
  return workdir_lock.WorkdirLock(
      str(workdir), log=(logs.append if logs is not None else print), **kwargs)


def _write_lock(workdir, content, age_seconds=0.0):
  """Writes `workdir/run.lock` (a dict becomes JSON) with an mtime that old."""
  os.makedirs(workdir, exist_ok=True)
  path = workdir_lock.lock_path(str(workdir))
  with open(path, "wb") as file:
    file.write(json.dumps(content).encode() if isinstance(content, dict) else content)
  if age_seconds:
    then = time.time() - age_seconds
    os.utime(path, (then, then))
  return path


def _record(host=HOST, pid=12345, **fields):
  return dict(dict(host=host, pid=pid, started=time.time() - 100, process_start=None),
              **fields)


def _process_start(pid):
  with open(f"/proc/{pid}/stat") as file:
    return int(file.read().rsplit(")", 1)[1].split()[19])


def _state(pid):
  with open(f"/proc/{pid}/stat") as file:
    return file.read().rsplit(")", 1)[1].split()[0]


def _wait_for(condition, seconds=2.0):
  deadline = time.monotonic() + seconds
  while not condition() and time.monotonic() < deadline:
    time.sleep(0.01)
  return condition()


def _assert_mine(workdir):
  holder = workdir_lock.read_holder(str(workdir))
  assert holder is not None
  assert (holder.host, holder.pid) == (HOST, os.getpid())


def test_acquire_writes_this_host_and_pid_and_release_removes_only_the_lock(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  lock = _lock(tmp_path)
  assert workdir_lock.read_holder(str(tmp_path)) is None
  lock.acquire()
  try:
    assert lock.held
    holder = lock.holder()
    assert (holder.host, holder.pid) == (HOST, os.getpid())
    assert abs(holder.started - time.time()) < 600
    with open(tmp_path / workdir_lock.LOCK_FILENAME) as file:
      record = json.load(file)
    assert set(record) >= {"host", "pid", "started", "process_start"}
    if os.path.exists("/proc/self/stat"):
      assert record["process_start"] == _process_start(os.getpid())
  finally:
    lock.release()
  assert not lock.held
  assert sorted(os.listdir(tmp_path)) == ["config.json"]
  lock.release()  # idempotent


def test_an_existing_empty_workdir_is_kept(tmp_path):
  with _lock(tmp_path):
    pass
  assert tmp_path.is_dir() and not os.listdir(tmp_path)


def test_workdirs_the_lock_created_are_removed_if_left_empty(tmp_path):
  workdir = tmp_path / "runs" / "a"
  with pytest.raises(RuntimeError, match="failed at startup"):
    with _lock(workdir):
      assert workdir.is_dir()
      _assert_mine(workdir)
      raise RuntimeError("failed at startup")
  assert not os.listdir(tmp_path)


def test_a_workdir_the_lock_created_is_kept_once_the_run_wrote_to_it(tmp_path):
  workdir = tmp_path / "runs" / "a"
  with _lock(workdir):
    (workdir / "config.json").write_text("{}")
  assert os.listdir(workdir) == ["config.json"]


def test_a_live_holder_in_another_process_is_refused_then_taken_over_when_killed(
    tmp_path):
  holder = _Worker(tmp_path)
  try:
    assert holder.next_line() == "READY"
    holder.go()
    assert holder.outcome() == ([], f"ACQUIRED {holder.process.pid}")
    with pytest.raises(workdir_lock.WorkdirLockedError) as raised:
      _lock(tmp_path).acquire()
    error = raised.value
    assert (error.host, error.pid) == (HOST, holder.process.pid)
    assert f"host {HOST}, pid {holder.process.pid}, started " in str(error)
    assert str(error).startswith(f"{tmp_path} is in use by another run (")
    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait(timeout=SUBPROCESS_TIMEOUT_SECONDS)
  finally:
    holder.process.kill()
    holder.process.wait()
  assert workdir_lock.read_holder(str(tmp_path)).pid == holder.process.pid
  logs = []
  with _lock(tmp_path, logs):
    _assert_mine(tmp_path)
  path = workdir_lock.lock_path(str(tmp_path))
  assert logs == [f"Taking over {path} left by pid {holder.process.pid} on host "
                  f"{HOST} (no longer running)."]
  assert not os.listdir(tmp_path)


def test_of_runs_taking_over_a_stale_lock_at_once_one_wins(tmp_path):
  _write_lock(tmp_path, _record(host="other-host"), age_seconds=3600)
  workers = [_Worker(tmp_path) for _ in range(4)]
  try:
    for worker in workers:
      assert worker.next_line() == "READY"
    for worker in workers:
      worker.go()
    outcomes = [worker.outcome() for worker in workers]
    winners = [worker for worker, (_, line) in zip(workers, outcomes)
               if line.startswith("ACQUIRED")]
    assert len(winners) == 1, outcomes
    winner_pid = winners[0].process.pid
    for worker, (logs, line) in zip(workers, outcomes):
      if worker is not winners[0]:
        assert line.startswith("LOCKED") and f"pid {winner_pid}," in line, outcomes
    # The run that removed the stale lock logs once it holds the lock; if another
    # run created its lock in between, that one wins without a notice.
    all_logs = [log for logs, _ in outcomes for log in logs]
    assert all_logs == outcomes[workers.index(winners[0])][0], outcomes
    assert len(all_logs) <= 1, outcomes
    for log in all_logs:
      assert log.startswith(f"Taking over {workdir_lock.lock_path(str(tmp_path))} "
                            "left by pid 12345 on host other-host (lock not refreshed "
                            "for ")
  finally:
    for worker in workers:
      worker.stop()
  assert sorted(worker.process.returncode for worker in workers) == [0, 2, 2, 2]
  assert not os.listdir(tmp_path)  # neither a lock nor a renamed stale one is left


@pytest.mark.parametrize("replacement", ["rewritten", "copied"])
def test_a_taker_that_moved_a_lock_it_did_not_judge_puts_it_back(tmp_path,
                                                                 replacement):
  # Between this taker's reading of a stale lock and its rename, another run
  # replaced the lock: other bytes in a file that may reuse the inode, or (to check
  # the inode alone) another file with the same bytes and mtime.
  path = _write_lock(tmp_path, _record(host="other-host"), age_seconds=3600)
  judged = workdir_lock._read_lock_file(path)
  if replacement == "rewritten":
    _write_lock(tmp_path, _record(host="winner-host"))
    expected_host = "winner-host"
  else:
    with open(path + ".new", "wb") as file:
      file.write(judged.data)
    mtime_ns = judged.identity[2]
    os.utime(path + ".new", ns=(mtime_ns, mtime_ns))
    os.rename(path + ".new", path)
    assert workdir_lock._read_lock_file(path).identity != judged.identity
    expected_host = "other-host"
  with open(path, "rb") as file:
    expected_bytes = file.read()
  assert not workdir_lock._remove_stale(path, judged)
  with open(path, "rb") as file:
    assert file.read() == expected_bytes
  assert workdir_lock.read_holder(str(tmp_path)).host == expected_host
  assert os.listdir(tmp_path) == [workdir_lock.LOCK_FILENAME]


@pytest.mark.parametrize("stale", [True, False])
def test_another_hosts_lock_is_taken_over_only_when_not_refreshed(tmp_path, stale):
  _write_lock(tmp_path, _record(host="other-host", pid=os.getpid()),
              age_seconds=60 if stale else 1)
  logs = []
  lock = _lock(tmp_path, logs, stale_seconds=30.0)
  if not stale:
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f"in use by another run \\(host other-host, pid "
                             f"{os.getpid()},"):
      lock.acquire()
    assert workdir_lock.read_holder(str(tmp_path)).host == "other-host"
    return
  with lock:
    _assert_mine(tmp_path)
  assert len(logs) == 1
  assert logs[0].startswith(
      f"Taking over {lock.path} left by pid {os.getpid()} on host other-host "
      "(lock not refreshed for ")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
@pytest.mark.parametrize("reused", [True, False])
def test_a_live_pid_with_another_start_time_is_a_reused_pid(tmp_path, reused):
  parent = os.getppid()
  start = _process_start(parent) + (1 if reused else 0)
  _write_lock(tmp_path, _record(pid=parent, process_start=start))
  logs = []
  lock = _lock(tmp_path, logs)
  if not reused:
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {parent},"):
      lock.acquire()
    return
  with lock:
    _assert_mine(tmp_path)
  assert logs == [f"Taking over {lock.path} left by pid {parent} on host {HOST} "
                  "(no longer running; its pid now belongs to another process)."]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_an_unreaped_dead_process_counts_as_gone(tmp_path):
  process = subprocess.Popen(["sleep", "60"])
  try:
    _write_lock(tmp_path, _record(pid=process.pid,
                                  process_start=_process_start(process.pid)))
    with pytest.raises(workdir_lock.WorkdirLockedError):
      _lock(tmp_path).acquire()
    process.kill()
    assert _wait_for(lambda: _state(process.pid) == "Z")  # until waited for
    logs = []
    with _lock(tmp_path, logs):
      _assert_mine(tmp_path)
    assert logs and logs[0].endswith("(no longer running).")
  finally:
    process.kill()
    process.wait()


def test_a_lock_naming_this_pid_not_held_in_this_process_is_stale(tmp_path):
  # Left by an earlier process that had this pid (a restarted container's pid 1).
  _write_lock(tmp_path, _record(pid=os.getpid()))
  logs = []
  with _lock(tmp_path, logs):
    _assert_mine(tmp_path)
  assert len(logs) == 1 and "an earlier process with this pid" in logs[0]


@pytest.mark.parametrize("stale", [True, False])
def test_another_pid_namespace_on_this_host_goes_by_the_refresh_time(tmp_path, stale):
  # Containers sharing the hostname (host networking) cannot see each other's pids.
  _write_lock(tmp_path, _record(pid=os.getppid(), pid_namespace="pid:[1]"),
              age_seconds=60 if stale else 1)
  lock = _lock(tmp_path, [], stale_seconds=30.0)
  if stale:
    with lock:
      _assert_mine(tmp_path)
  else:
    with pytest.raises(workdir_lock.WorkdirLockedError):
      lock.acquire()


def test_the_heartbeat_refreshes_the_mtime(tmp_path):
  with _lock(tmp_path, refresh_seconds=0.05) as lock:
    long_ago = time.time() - 1000
    os.utime(lock.path, (long_ago, long_ago))
    assert _wait_for(lambda: os.stat(lock.path).st_mtime > long_ago + 500)


def test_the_heartbeat_warns_once_if_the_lock_is_replaced(tmp_path):
  logs = []
  with _lock(tmp_path, logs) as lock:
    os.unlink(lock.path)
    _write_lock(tmp_path, _record(host="other-host"))
    assert _wait_for(lambda: logs)
    time.sleep(0.15)  # three more refreshes
    assert len(logs) == 1 and "was removed or replaced" in logs[0]
  assert workdir_lock.read_holder(str(tmp_path)).host == "other-host"


def test_release_leaves_a_lock_someone_else_took_over(tmp_path):
  with _lock(tmp_path) as lock:
    with open(lock.path, "w") as file:  # the same inode, another holder
      json.dump(_record(host="other-host", pid=999), file)
  holder = workdir_lock.read_holder(str(tmp_path))
  assert (holder.host, holder.pid) == ("other-host", 999)


def test_a_forked_child_releasing_leaves_the_parents_lock(tmp_path, monkeypatch):
  workdir = tmp_path / "runs"
  lock = _lock(workdir)
  lock.acquire()
  try:
    with monkeypatch.context() as patch:  # as in a child forked while it was held
      patch.setattr(workdir_lock.os, "getpid", lambda: 4194304)
      lock.release()
    assert not lock.held
    _assert_mine(workdir)
  finally:
    os.unlink(lock.path)
  assert workdir.is_dir()  # not removed by the child either


def test_the_same_workdir_twice_in_one_process_is_refused(tmp_path):
  with _lock(tmp_path):
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match="already in use by this process") as raised:
      _lock(f"{tmp_path}/./").acquire()
    assert raised.value.pid == os.getpid()
    _assert_mine(tmp_path)
  assert not os.listdir(tmp_path)
  with _lock(tmp_path):  # free again
    pass


def test_disabled_does_nothing(tmp_path):
  workdir = tmp_path / "runs"
  with _lock(workdir, enabled=False) as lock:
    assert not lock.held
    assert not workdir.exists()
  _write_lock(workdir, _record(pid=os.getppid()))
  with _lock(workdir, enabled=False):  # not even refused
    pass


@pytest.mark.parametrize("content", [
    b"", b'{"host": "h', b"[]", b'{"host": "h"}', b'{"host": "h", "pid": 0}',
    b'{"host": "", "pid": 5}', b'{"host": "h", "pid": true}'])
def test_an_unreadable_lock_older_than_a_refresh_is_taken_over(tmp_path, content):
  _write_lock(tmp_path, content, age_seconds=10)
  assert workdir_lock.read_holder(str(tmp_path)).pid is None
  logs = []
  lock = _lock(tmp_path, logs, refresh_seconds=5.0, stale_seconds=30.0)
  with lock:
    _assert_mine(tmp_path)
  assert len(logs) == 1
  assert logs[0].startswith(f"Taking over {lock.path} (unreadable, not refreshed for")


@pytest.mark.parametrize("content", [b"", b'{"host": "h"}'])
def test_a_fresh_unreadable_lock_is_refused(tmp_path, content):
  # Perhaps a run between creating the file and writing it: reread a few times.
  _write_lock(tmp_path, content)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match="holder unknown: the lock file is unreadable") as raised:
    _lock(tmp_path, refresh_seconds=5.0, stale_seconds=30.0).acquire()
  assert (raised.value.host, raised.value.pid) == (None, None)
  with open(workdir_lock.lock_path(str(tmp_path)), "rb") as file:
    assert file.read() == content


def test_a_lock_file_being_written_is_read_again(tmp_path, monkeypatch):
  path = _write_lock(tmp_path, b"")  # created, not yet written

  def write_while_waiting(seconds):
    _write_lock(tmp_path, _record(pid=os.getppid()))

  monkeypatch.setattr(workdir_lock.time, "sleep", write_while_waiting)
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getppid()},"):
    _lock(tmp_path).acquire()
  assert workdir_lock.read_holder(str(tmp_path)).pid == os.getppid()
  assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_the_error_is_one_line_with_its_exit_code():
  started = time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, -1))
  error = workdir_lock.WorkdirLockedError("runs/x", "h1", 1234, started, 3.4)
  assert str(error) == (
      "runs/x is in use by another run (host h1, pid 1234, started 2026-12-07 "
      "12:00:00, lock refreshed 3 s ago); wait for it to finish or stop it, or use "
      "another --workdir.")
  assert error.exit_code == 2
  assert (error.workdir, error.host, error.pid, error.refreshed_seconds_ago) == (
      "runs/x", "h1", 1234, 3.4)


def test_refresh_must_be_shorter_than_staleness(tmp_path):
  with pytest.raises(ValueError, match="refresh_seconds < stale_seconds"):
    workdir_lock.WorkdirLock(str(tmp_path), refresh_seconds=10.0, stale_seconds=10.0)
