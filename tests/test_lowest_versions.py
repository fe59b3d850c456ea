"""The lowest-versions CI run pins what pyproject.toml declares (`.ci/lowest`)."""
import importlib.util
import pathlib
import subprocess
import sys

from packaging.requirements import Requirement
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "lowest_constraints.py"


def _load_script():
  spec = importlib.util.spec_from_file_location("lowest_constraints", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _declared():
  return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_runtime_dependency_has_one_lower_bound_and_it_is_pinned():
  """Read with `packaging` (not the script's own parser): the printed pins are exactly
  the declared lower bounds, one per runtime dependency."""
  expected = {}
  for line in _declared()["dependencies"]:
    requirement = Requirement(line)
    lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(lower) == 1, f"{line}: needs exactly one lower bound"
    expected[requirement.name] = lower[0]
  printed = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                           check=True, timeout=60).stdout.split()
  assert dict(line.split("==") for line in printed) == expected


def test_a_dependency_without_a_lower_bound_is_refused(tmp_path):
  pyproject = tmp_path / "pyproject.toml"
  pyproject.write_text('[project]\ndependencies = ["jax>=0.6.2", "numpy<3"]\n')
  script = _load_script()
  try:
    script.floors(pyproject)
  except ValueError as error:
    assert "numpy<3" in str(error)
  else:
    raise AssertionError("numpy<3 has no lower bound and was accepted")


def test_the_lowest_run_installs_the_test_tools_but_not_torch_ruff_or_mypy():
  tools = {Requirement(line).name for line in _load_script().test_tools()}
  declared = {Requirement(line).name for line in _declared()["optional-dependencies"]["test"]}
  assert tools == declared - {"torch", "torchvision", "pytorch-fid", "ruff", "mypy"}
  lowest = (ROOT / ".ci" / "lowest").read_text()
  assert "lowest_constraints.py" in lowest and "lowest_constraints.py --test-tools" in lowest
  run = (ROOT / ".ci" / "run").read_text().splitlines()
  assert run.index("bash .ci/lowest") > run.index("python -m pytest -q")
  assert "bash .ci/docs" in run
