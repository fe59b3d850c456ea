"""Before/after: one benchmark run alternately on two source trees, numbers compared.

  python -m benchmarks.before_after --before /tmp/tripjax_before --rounds 5 -- \\
      benchmarks.quickstart_speed --task vae
  python -m benchmarks.before_after --before /tmp/tripjax_before --rounds 5 -- \\
      benchmarks.quickstart_speed --task gan
  python -m benchmarks.before_after --before /tmp/tripjax_before --rounds 3 \\
      --json /tmp/vae_step.json -- benchmarks.vae_step --priors normal trip --repeats 3
  python -m benchmarks.before_after --before /tmp/tripjax_before --rounds 3 -- \\
      benchmarks.gan_step --variants normal "trip L" --repeats 3

Everything after `--` is a benchmark module and its arguments. Each round runs it once
in the --before tree and once in the --after tree (default: this checkout), each a
fresh `python -m MODULE ARGS` process with the tree as its working directory, in the
order ABBA (`--order abba`: round 1 before-after, round 2 after-before, ...), so a
drift in the machine's speed hits both trees alike; `--order abab` keeps before first.

Which code runs: the child is `python -I` (no PYTHONPATH, no current directory, no
user site on sys.path) started through this file, which puts the tree first on
sys.path, drops the import hook of an editable `pip install -e` of tripjax (it maps
`tripjax`, `tripjax.configs` and `tripjax.train` to the installed checkout and would
hand the other tree's `tripjax.configs` to the before runs) and maps the tree's own
`[tool.setuptools.package-dir]` packages (`tripjax.configs` -> TREE/configs, ...)
instead. When the run ends the child checks that every loaded module of the trees'
packages (tripjax, configs, train, benchmarks, ...) came from its tree and prints a
`TREECHECK` line, which this script requires. A module missing in a tree (e.g.
`benchmarks.quickstart_speed`, new in the after tree) runs there as the after tree's
file with the tree's packages (`--script-from after` does so for every module).

Numbers read from each run's stdout: `RESULT key=value ...` lines (numeric values are
metrics named `<task> <key>`; `devices`, `repeats` and `epochs` are compared across
the trees, not measured) and every markdown table's columns whose header says ms
(`<row label>: <header>`, e.g. `trip: step ms` of `benchmarks.vae_step`), plus each
process's wall time. Printed: per metric the median over the rounds in each tree,
after/before, how much slower the after tree is (from the ratio, inverted for rates
such as steps_per_second), after/before within each round (its two runs are adjacent
in time) and every round's value; the 1-minute load average after each run and the
load average at the start and the end.
`--json PATH` writes the same, with every run's numbers.

A shared machine: each run's line and the summary give the cores that other processes
used while it ran (Linux: the machine's CPU time from /proc/stat, less the run's own,
over its wall time). On a 2-core machine a test suite running beside a benchmark
halves its speed, far beyond the 5% to be resolved; `--quiet-below 0.2` waits (up to
`--quiet-wait` seconds) before each run until the others use under 0.2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CHILD_FLAG = "--_child"
TREECHECK = "TREECHECK"
# Top-level packages of a tripjax checkout whose loaded modules must come from the tree.
TREE_PACKAGES = ("tripjax", "configs", "train", "benchmarks", "tests")
# RESULT fields that describe a run rather than measure it (compared across trees).
INFO_KEYS = ("devices", "repeats", "epochs")
WALL = "[process wall s]"


# ------------------------------------------------------------------ the child process


def _package_dirs(tree: str) -> dict[str, str]:
  """Package name -> directory in `tree`: tripjax and the pyproject's package-dir."""
  package_dir = {"tripjax.configs": "configs", "tripjax.train": "train"}
  pyproject = os.path.join(tree, "pyproject.toml")
  try:
    import tomllib  # pylint: disable=import-outside-toplevel  # Python >= 3.11
    with open(pyproject, "rb") as file:
      package_dir = (tomllib.load(file).get("tool", {}).get("setuptools", {})
                     .get("package-dir", package_dir))
  except (ImportError, OSError):
    pass  # Python 3.10 or no pyproject.toml: the mapping of tripjax's pyproject.toml.
  mapping = {"tripjax": os.path.join(tree, "tripjax")}
  mapping.update({name: os.path.join(tree, directory)
                  for name, directory in package_dir.items() if name})
  return mapping


class _TreeFinder:
  """A meta path finder: the packages of `_package_dirs` from their tree directories
  (their submodules then come from the package's __path__ as usual)."""

  def __init__(self, mapping: dict[str, str]):
    self.mapping = mapping

  def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002
    import importlib.util  # pylint: disable=import-outside-toplevel
    directory = self.mapping.get(fullname)
    if directory is None:
      return None
    init = os.path.join(directory, "__init__.py")
    if not os.path.exists(init):
      return None
    return importlib.util.spec_from_file_location(
        fullname, init, submodule_search_locations=[directory])


def _isolate(tree: str) -> None:
  """Imports of tripjax & co. from `tree` only (see the module docstring)."""
  for finder in list(sys.meta_path):
    owner = sys.modules.get(getattr(finder, "__module__", ""))
    mapping = getattr(owner, "MAPPING", None)
    if isinstance(mapping, dict) and any(name.split(".")[0] == "tripjax"
                                         for name in mapping):
      sys.meta_path.remove(finder)  # setuptools' editable finder of tripjax
  sys.path[:] = [entry for entry in sys.path if not (
      entry and os.path.realpath(entry) != tree
      and os.path.exists(os.path.join(entry, "tripjax", "__init__.py")))]
  for name in [name for name in sys.modules if name.split(".")[0] in TREE_PACKAGES]:
    del sys.modules[name]
  sys.path.insert(0, tree)
  sys.meta_path.insert(0, _TreeFinder(_package_dirs(tree)))


def _module_file(module) -> str | None:
  path = getattr(module, "__file__", None)
  if path is None:
    path = next(iter(getattr(module, "__path__", None) or ()), None)
  return path and os.path.realpath(path)


def _tree_check(tree: str, script: str) -> str:
  """The TREECHECK line: ok when every loaded module of TREE_PACKAGES is in `tree`."""
  foreign, count = [], 0
  for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] not in TREE_PACKAGES or module is None:
      continue
    count += 1
    path = _module_file(module)
    if path is None or not path.startswith(tree + os.sep):
      foreign.append(f"{name}:{path}")
  located = {name: _module_file(sys.modules[name]) for name in ("tripjax",
                                                                "tripjax.configs")
             if name in sys.modules}
  fields = " ".join(f"{name}={path}" for name, path in located.items())
  status = "ok" if not foreign and "tripjax" in located else "FOREIGN"
  line = f"{TREECHECK} {status} tree={tree} script={script} modules={count} {fields}"
  if foreign:
    line += " foreign=" + ",".join(foreign)
  return line


def _child(argv: list[str]) -> None:
  """`TREE KIND TARGET ARGS...`: runs module (KIND "module") or file (KIND "path")
  TARGET as __main__ with ARGS and tripjax from TREE, then prints the TREECHECK line."""
  tree, kind, target, *args = argv
  tree = os.path.realpath(tree)
  _isolate(tree)
  import runpy  # pylint: disable=import-outside-toplevel
  sys.argv = [target, *args]
  script = target if kind == "path" else _script_location(target, tree) or target
  try:
    if kind == "module":
      runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
      runpy.run_path(target, run_name="__main__")
  finally:
    sys.stdout.flush()
    print(_tree_check(tree, script), flush=True)


# ----------------------------------------------------------------- the parent process


def parse_numbers(stdout: str) -> tuple[dict[str, float], dict[str, str]]:
  """(metrics, info) of a run's stdout: RESULT lines and the ms columns of markdown
  tables (see the module docstring)."""
  metrics, info = {}, {}

  def add(name, value):
    unique, n = name, 2
    while unique in metrics:
      unique, n = f"{name} ({n})", n + 1
    metrics[unique] = value

  lines = stdout.splitlines()
  for line in lines:
    if not line.startswith("RESULT "):
      continue
    fields = dict(field.split("=", 1) for field in line.split()[1:] if "=" in field)
    label = fields.get("task", "")
    for key, value in fields.items():
      if key in INFO_KEYS:
        info[f"{label} {key}".strip()] = value
        continue
      try:
        add(f"{label} {key}".strip(), float(value))
      except ValueError:
        pass
  separator = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
  for i in range(1, len(lines)):
    if not (separator.match(lines[i].strip()) and lines[i - 1].strip().startswith("|")):
      continue
    header = [cell.strip() for cell in lines[i - 1].strip().strip("|").split("|")]
    columns = [j for j, name in enumerate(header)
               if j > 0 and re.search(r"\bms\b", name) and "%" not in name]
    for row in lines[i + 1:]:
      if not row.strip().startswith("|"):
        break
      cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
      for j in columns:
        if j < len(cells):
          try:
            add(f"{cells[0]}: {header[j]}", float(cells[j]))
          except ValueError:
            pass
  return metrics, info


def is_rate(metric: str) -> bool:
  """Higher is better (steps per second); else a time, lower is better."""
  return "per_second" in metric or metric.endswith("/s")


def _script_location(module: str, tree: str) -> str | None:
  base = os.path.join(tree, *module.split("."))
  for path in (base + ".py", os.path.join(base, "__main__.py")):
    if os.path.exists(path):
      return path
  return None


def _git_state(tree: str) -> str:
  try:
    head = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain"],
                           capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return "not a git tree"
  changed = len(dirty.splitlines())
  return f"{head}" + (f" + {changed} changed/untracked file(s)" if changed else "")


def _cpu_busy_seconds() -> float | None:
  """CPU seconds every process on the machine has run (and the hypervisor has stolen),
  from Linux's /proc/stat; None elsewhere."""
  try:
    with open("/proc/stat") as file:
      fields = file.readline().split()
  except OSError:
    return None
  if not fields or fields[0] != "cpu":
    return None
  # user nice system idle iowait irq softirq steal (guest time is inside user).
  user, nice, system, _, _, irq, softirq, steal = (int(v) for v in fields[1:9])
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _wait_for_quiet(cores: float, max_wait: float) -> tuple[float, float | None]:
  """Until the machine's CPU use over 2 s is below `cores` (this script idles meanwhile)
  or `max_wait` seconds passed: (seconds waited, cores in use in the last 2 s)."""
  begin = time.perf_counter()
  while True:
    busy, start = _cpu_busy_seconds(), time.perf_counter()
    time.sleep(2)
    end_busy = _cpu_busy_seconds()
    if busy is None or end_busy is None:
      return 0.0, None
    in_use = (end_busy - busy) / (time.perf_counter() - start)
    if in_use < cores or time.perf_counter() - begin > max_wait:
      return time.perf_counter() - begin, in_use


def _load() -> list[float]:
  return [round(value, 2) for value in os.getloadavg()]


def _format(value: float) -> str:
  return f"{value:.4g}"


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == [CHILD_FLAG]:
    _child(argv[1:])
    return 0
  if "--" not in argv:
    argv.append("--")
  split = argv.index("--")
  own, command = argv[:split], argv[split + 1:]
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.before_after", description=__doc__,
      usage="%(prog)s --before TREE [--after TREE] [--rounds N] [...] -- MODULE [ARGS]",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--before", required=True, help="the tree before the change")
  parser.add_argument("--after", default=".", help="the tree after it (default: .)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="runs in each tree (default 5)")
  parser.add_argument("--order", choices=("abba", "abab"), default="abba")
  parser.add_argument("--script-from", choices=("each", "after"), default="each",
                      help="each: a tree's own copy of MODULE where it has one; after: "
                      "the after tree's file in both trees")
  parser.add_argument("--timeout", type=float, default=3600,
                      help="seconds a run may take")
  parser.add_argument("--json", help="also write the results here")
  parser.add_argument("--quiet-below", type=float, metavar="CORES",
                      help="before each run, wait until the other processes use "
                      "fewer than CORES cores (sampled over 2 s; Linux), at most "
                      "--quiet-wait seconds")
  parser.add_argument("--quiet-wait", type=float, default=600, metavar="SECONDS",
                      help="the longest wait for --quiet-below (default 600)")
  args = parser.parse_args(own)
  if not command:
    parser.error("give the benchmark after `--`, e.g. -- benchmarks.vae_step")
  if args.rounds < 1:
    parser.error("--rounds must be at least 1")
  module, module_args = command[0], command[1:]
  trees = {"before": os.path.realpath(args.before),
           "after": os.path.realpath(args.after)}
  for label, tree in trees.items():
    if not os.path.exists(os.path.join(tree, "tripjax", "__init__.py")):
      parser.error(f"--{label} {tree}: no tripjax/__init__.py there")
  if trees["before"] == trees["after"]:
    parser.error("--before and --after are the same tree")
  after_script = _script_location(module, trees["after"])
  targets = {}
  for label, tree in trees.items():
    own_script = _script_location(module, tree)
    if own_script and args.script_from == "each":
      targets[label] = ("module", module)
    elif after_script:
      targets[label] = ("path", after_script)
    else:
      parser.error(f"{module}: no such module in {tree} or {trees['after']}")

  this_file = os.path.realpath(__file__)
  load_start, started = _load(), time.perf_counter()
  print(f"{module} {' '.join(module_args)}: {args.rounds} round(s), order "
        f"{args.order}; load average {load_start} on {os.cpu_count()} cores")
  for label, tree in trees.items():
    kind, target = targets[label]
    print(f"  {label}: {tree} ({_git_state(tree)}), runs "
          f"{'its ' + target if kind == 'module' else target}")
  sys.stdout.flush()

  runs: list[dict[str, Any]] = []
  for round_index in range(args.rounds):
    order = ["before", "after"]
    if args.order == "abba" and round_index % 2:
      order.reverse()
    for label in order:
      kind, target = targets[label]
      cmd = [sys.executable, "-I", *(["-B"] if sys.flags.dont_write_bytecode else []),
             this_file, CHILD_FLAG, trees[label], kind, target, *module_args]
      waited, idle_cores = 0.0, None
      if args.quiet_below is not None:
        waited, idle_cores = _wait_for_quiet(args.quiet_below, args.quiet_wait)
      busy, own = _cpu_busy_seconds(), _children_cpu_seconds()
      begin = time.perf_counter()
      try:
        done = subprocess.run(cmd, cwd=trees[label], capture_output=True, text=True,
                              timeout=args.timeout, check=False)
      except subprocess.TimeoutExpired:
        print(f"error: the {label} run of round {round_index + 1} took over "
              f"{args.timeout:g} s", file=sys.stderr)
        return 1
      wall = time.perf_counter() - begin
      end_busy = _cpu_busy_seconds()
      # Cores the other processes used during the run, on average: the machine's CPU
      # seconds less the run's own (its process and threads), over its wall time.
      other = (None if busy is None or end_busy is None else max(0.0, (
          end_busy - busy - (_children_cpu_seconds() - own)) / wall))
      check = [line for line in done.stdout.splitlines() if line.startswith(TREECHECK)]
      if done.returncode or not check or not check[-1].startswith(f"{TREECHECK} ok "):
        print(f"error: the {label} run of round {round_index + 1} failed (exit "
              f"{done.returncode}): {' '.join(cmd)}\n--- stdout (tail)\n"
              f"{done.stdout[-3000:]}\n--- stderr (tail)\n{done.stderr[-3000:]}",
              file=sys.stderr)
        return 1
      metrics, info = parse_numbers(done.stdout)
      if not metrics:
        print(f"error: no RESULT line or ms table in the {label} run's output:\n"
              f"{done.stdout[-3000:]}", file=sys.stderr)
        return 1
      metrics[WALL] = wall
      runs.append({"round": round_index + 1, "tree": label, "wall_s": round(wall, 2),
                   "load": _load(),
                   "other_cores": None if other is None else round(other, 3),
                   "waited_s": round(waited, 1), "cores_in_use_before":
                   None if idle_cores is None else round(idle_cores, 2),
                   "metrics": metrics, "info": info, "treecheck": check[-1]})
      shown = ", ".join(f"{name}={_format(value)}" for name, value in metrics.items()
                        if name != WALL)
      busy_text = "" if other is None else f"other procs {other:4.2f} cores  "
      wait_text = f"waited {waited:.0f} s  " if waited >= 1 else ""
      print(f"[round {round_index + 1}/{args.rounds}] {label:6s} {wall:6.1f} s  "
            f"{wait_text}{busy_text}load {runs[-1]['load'][0]:5.2f}  {shown}",
            flush=True)
  if runs:
    print("  " + "\n  ".join(sorted({run["treecheck"] for run in runs})))

  names = list(dict.fromkeys(name for run in runs for name in run["metrics"]))
  table = {}
  for name in names:
    by_round = {label: {run["round"]: run["metrics"][name] for run in runs
                        if run["tree"] == label and name in run["metrics"]}
                for label in trees}
    values = {label: [by_round[label][r] for r in sorted(by_round[label])]
              for label in trees}
    # after/before within each round: the two runs of a round are adjacent in time.
    round_ratios = [by_round["after"][r] / by_round["before"][r]
                    for r in sorted(by_round["before"])
                    if r in by_round["after"] and by_round["before"][r]]
    if not values["before"] or not values["after"]:
      missing = "before" if not values["before"] else "after"
      print(f"warning: {name} is missing in the {missing} runs")
      continue
    before, after = (statistics.median(values[label]) for label in trees)
    ratio = after / before if before else float("nan")
    slower = (1 / ratio - 1) if is_rate(name) else (ratio - 1)
    table[name] = {"before_median": before, "after_median": after,
                   "ratio_after_over_before": ratio,
                   "after_slower_percent": 100 * slower,
                   "higher_is_better": is_rate(name),
                   "round_ratios": round_ratios, "before": values["before"],
                   "after": values["after"]}
  infos = {label: sorted({f"{key}={value}" for run in runs if run["tree"] == label
                          for key, value in run["info"].items()}) for label in trees}
  load_end, total = _load(), time.perf_counter() - started

  print(f"\n{module} {' '.join(module_args)}: medians of {args.rounds} round(s) "
        f"({args.order}); load average {load_start} at the start, {load_end} at the "
        f"end; {total:.0f} s in all.\n")
  print("| metric | before | after | after/before | after slower % | after/before "
        "by round | before runs | after runs |")
  print("|---|---|---|---|---|---|---|---|")
  for name, row in table.items():
    print(f"| {name} | {_format(row['before_median'])} "
          f"| {_format(row['after_median'])} "
          f"| {row['ratio_after_over_before']:.3f} "
          f"| {row['after_slower_percent']:+.1f} "
          f"| {' '.join(f'{ratio:.3f}' for ratio in row['round_ratios'])} "
          f"| {' '.join(map(_format, row['before']))} "
          f"| {' '.join(map(_format, row['after']))} |")
  others = {label: [run["other_cores"] for run in sorted(runs, key=lambda r: r["round"])
                    if run["tree"] == label and run["other_cores"] is not None]
            for label in trees}
  if others["before"] or others["after"]:
    print("\nCores the other processes used during each run (by round): before "
          f"{' '.join(f'{v:.2f}' for v in others['before'])}; after "
          f"{' '.join(f'{v:.2f}' for v in others['after'])} (of {os.cpu_count()}).")
    if max(others["before"] + others["after"]) > 0.1 * (os.cpu_count() or 1):
      print("warning: runs shared the CPUs with other processes (over 10% of the "
            "cores): their times mix in the others' load (--quiet-below waits for "
            "a quiet machine).")
  if infos["before"] != infos["after"]:
    print(f"\nwarning: the trees ran differently: before {infos['before']}, after "
          f"{infos['after']}")
  elif infos["before"]:
    print(f"\nBoth trees: {', '.join(infos['before'])}.")
  if args.json:
    with open(args.json, "w") as file:
      json.dump({"command": [module, *module_args], "trees": trees,
                 "git": {label: _git_state(tree) for label, tree in trees.items()},
                 "rounds": args.rounds, "order": args.order,
                 "load_average_start": load_start, "load_average_end": load_end,
                 "total_s": round(total, 1), "cpu_count": os.cpu_count(),
                 "metrics": table, "info": infos, "runs": runs}, file, indent=1)
    print(f"Wrote {args.json}.")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
