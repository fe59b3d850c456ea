"""The committed results files of the results scripts: `results/<study>.json` and `.md`.

Every results script (`benchmarks.vae_results`, `cvae_results`, `gan_results`,
`fashion_results`) writes, per study it reports, two files under `--results-dir`
(default `results/`, committed with the code):

* `<study>.json`: what the table is computed from. {"study", "script" (the module
  that renders it), "command" (how to regenerate it), "markdown" (the table as below),
  "runs": [one record per run: the config fields its variant changes ("fields"),
  "seed", "steps", its final metrics, and "commits": where each part of the run was
  trained, see `record_start`], plus the script's own keys (e.g. "steps")}. No
  checkpoints, no workdir contents.
* `<study>.md`: the table exactly as README shows it (caption and markdown table).

`tests/test_results_files.py` re-renders every committed `.md` from its `.json` with the
script's `render(results)` and checks that README contains each `.md` verbatim, so
README's results tables are these files.

Commits: before the sweep runner (`vae_results.run_jobs`) starts or resumes a run, it
appends {"commit", "dirty", "from_step", "time"} to the run's `commits.jsonl`:
the HEAD commit of the checkout it runs in, whether tracked files under tripjax/,
train/ or configs/ differed from it, and the step it starts from (its newest
checkpoint, `<workdir>/checkpoints/<step>`; 0 for a fresh start). So the steps
(from_step, next record's from_step] were trained at that commit.
Runs trained before these files existed have no `commits.jsonl` ("commits": []).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from typing import Any

RESULTS_DIR = "results"
COMMITS_FILENAME = "commits.jsonl"
CHECKPOINTS_DIRNAME = "checkpoints"  # tripjax.training.checkpoints: one folder a step
# The code a run's numbers depend on (a change elsewhere, e.g. README, is not "dirty").
CODE_PATHS = ("tripjax", "train", "configs")


def git_state(repo: str = ".") -> dict[str, Any]:
  """{"commit": HEAD's hash or None outside git, "dirty": code under CODE_PATHS
  differs from HEAD}."""
  def git(*args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          check=False)

  head = git("rev-parse", "HEAD")
  if head.returncode != 0:
    return {"commit": None, "dirty": None}
  status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
  return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def newest_checkpoint_step(workdir: str) -> int:
  """The step of the run's newest checkpoint (`checkpoints/<step>`), 0 if none."""
  directory = os.path.join(workdir, CHECKPOINTS_DIRNAME)
  if not os.path.isdir(directory):
    return 0
  return max([int(name) for name in os.listdir(directory) if name.isdigit()],
             default=0)


def record_start(workdir: str, repo: str = ".") -> dict:
  """Appends where this part of the run is trained to `workdir`/commits.jsonl."""
  record = {**git_state(repo), "from_step": newest_checkpoint_step(workdir),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, COMMITS_FILENAME), "a") as file:
    file.write(json.dumps(record) + "\n")
  return record


def run_commits(workdir: str) -> list[dict]:
  """The `record_start` records of a run, oldest first ([] if it has none)."""
  path = os.path.join(workdir, COMMITS_FILENAME)
  if not os.path.exists(path):
    return []
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


def write(study: str, *, script: str, command: str, markdown: str, runs: list[dict],
          results_dir: str = RESULTS_DIR, **extra) -> tuple[str, str]:
  """Writes `results_dir`/<study>.json and .md; returns their paths.

  Args:
    study: the file stem, e.g. "vae_digits".
    script: the module whose `render(results)` gives `markdown` back from the json.
    command: the command that regenerates the study.
    markdown: the table as README shows it (ends with a newline).
    runs: one JSON-serializable record per run (see the module docstring).
    **extra: further top-level keys the script's `render` reads.

  Raises:
    SystemExit: with a one-line message and nothing written, when `runs` is empty (a
      sweep with no finished run must not replace a committed results file).
  """
  if not runs:
    raise SystemExit(f"{script}: no finished run for results/{study}; nothing written "
                     f"(a committed {study}.json and .md stay as they are)")
  if not markdown.endswith("\n"):
    raise ValueError("markdown must end with a newline")
  os.makedirs(results_dir, exist_ok=True)
  results = {"study": study, "script": script, "command": command, **extra,
             "markdown": markdown, "runs": runs}
  json_path = os.path.join(results_dir, f"{study}.json")
  md_path = os.path.join(results_dir, f"{study}.md")
  with open(json_path, "w") as file:
    json.dump(results, file, indent=1, ensure_ascii=False)
    file.write("\n")
  with open(md_path, "w") as file:
    file.write(markdown)
  return json_path, md_path


def command_line(module: str, argv: list[str] | None = None) -> str:
  """The command that regenerates a study, as its json records it:
  "python -m <module> <the arguments>" (`argv`, or this process's own)."""
  return f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)


def add_sweep_arguments(parser: argparse.ArgumentParser, *, workdir: str,
                        workdir_help: str = "root of the run workdirs") -> None:
  """The options every resumable results script shares: --workdir (default
  `workdir`), --parallel, --train / --no-train and --results-dir."""
  parser.add_argument("--workdir", default=workdir, help=workdir_help)
  parser.add_argument("--parallel", type=int, default=1,
                      help="runs at a time, each on one CPU device when > 1")
  parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                      help="train missing runs (--no-train: report the finished ones)")
  parser.add_argument("--results-dir", default=RESULTS_DIR,
                      help="where the committed results files go (<study>.json, .md)")


def mean_sd_cell(row: dict, metric: str, *, scale: float = 1.0,
                 decimals: int = 2) -> str:
  """A table cell of a summarized row: "mean ± sd" (`row[metric + "_mean"]`, `_sd`,
  times `scale`) over its seeds, the value alone for one seed (no spread to show), and
  "n/a" where the row has no such metric."""
  if f"{metric}_mean" not in row:
    return "n/a"
  mean = scale * row[f"{metric}_mean"]
  if len(row["seeds"]) == 1:
    return f"{mean:.{decimals}f}"
  return f"{mean:.{decimals}f} ± {scale * row[f'{metric}_sd']:.{decimals}f}"


def read(path: str) -> dict:
  """A `<study>.json` written by `write`."""
  with open(path) as file:
    return json.load(file)
