"""The wheel: only the `tripjax` package (train/ and configs/ inside it, no top-level
`train` or `configs` to shadow other projects), every module of the checkout, and
console scripts that point at functions that exist."""
import configparser
import importlib
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
  # Built from a copy of the sources: a stale build/ in the checkout cannot leak in.
  source = tmp_path_factory.mktemp("source") / "tripjax"
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      ".git", ".venv", ".ci-venv", ".ci-venv-lowest", "_build", "runs", "build", "dist",
      "*.egg-info", "__pycache__", ".pytest_cache"))
  out = tmp_path_factory.mktemp("wheel")
  result = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
       str(source)], capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  (wheel,) = out.glob("tripjax-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    return names, archive.read(entry_points).decode()


def test_wheel_installs_only_the_tripjax_package(wheel_files):
  names, _ = wheel_files
  top_level = {name.split("/")[0] for name in names}
  assert {t for t in top_level if not t.endswith(".dist-info")} == {"tripjax"}


def test_wheel_holds_every_module_of_the_checkout(wheel_files):
  names = set(wheel_files[0])
  expected = [f"tripjax/{p.relative_to(ROOT / 'tripjax').as_posix()}"
              for p in (ROOT / "tripjax").rglob("*.py")]
  expected += [f"tripjax/train/{p.name}" for p in (ROOT / "train").glob("*.py")]
  expected += [f"tripjax/configs/{p.name}" for p in (ROOT / "configs").glob("*.py")]
  assert len(expected) > 60
  assert sorted(set(expected) - names) == []
  assert not any(name.startswith(("tests/", "benchmarks/", "colab/")) for name in names)


def test_console_scripts_point_at_existing_main_functions(wheel_files):
  parser = configparser.ConfigParser()
  parser.read_string(wheel_files[1])
  scripts = dict(parser["console_scripts"])
  assert {"tripjax-train-vae", "tripjax-train-gan", "tripjax-train-cvae",
          "tripjax-cvae-sample", "tripjax-fid", "tripjax-train-classifier"} <= set(scripts)
  for target in scripts.values():
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function)), target


def test_wheel_is_typed(wheel_files):
  """PEP 561: the wheel carries tripjax/py.typed, so users' type checkers read the
  annotations."""
  assert "tripjax/py.typed" in wheel_files[0]
