"""Pins for the lowest-versions CI run, read from pyproject.toml (so they cannot drift).

`python .ci/lowest_constraints.py` prints `name==floor` for every runtime dependency
(`[project] dependencies`), each of which must declare exactly one lower bound `>=`.
`--test-tools` prints the test extra's requirements that the lowest run installs as
declared (not pinned): all but the PyTorch FID references and the lint/type tools,
whose tests that run does not collect.
"""
import argparse
import pathlib
import re
import sys

import tomllib

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
# Test-only tools the lowest run leaves out: the PyTorch references of the FID network
# and the step benchmarks, and the linter and type checker.
NOT_IN_LOWEST_RUN = ("torch", "torchvision", "pytorch-fid", "ruff", "mypy")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)$")


def _name_and_specifiers(requirement: str) -> tuple[str, list[str]]:
  match = _REQUIREMENT.match(requirement)
  if match is None:
    raise ValueError(f"Cannot read the requirement {requirement!r} in {PYPROJECT}.")
  specifiers = [part.strip() for part in match.group(3).split(",") if part.strip()]
  return match.group(1), specifiers


def floors(pyproject: pathlib.Path = PYPROJECT) -> dict[str, str]:
  """{name: lower bound} of every runtime dependency, in pyproject's order."""
  project = tomllib.loads(pyproject.read_text())["project"]
  result = {}
  for requirement in project["dependencies"]:
    name, specifiers = _name_and_specifiers(requirement)
    lower = [spec[2:].strip() for spec in specifiers if spec.startswith(">=")]
    if len(lower) != 1:
      raise ValueError(f"The dependency {requirement!r} in {pyproject} needs exactly one "
                       "lower bound `>=` (the lowest-versions CI run installs it).")
    result[name] = lower[0]
  return result


def test_tools(pyproject: pathlib.Path = PYPROJECT) -> list[str]:
  """The test extra's requirements the lowest run installs, as declared."""
  project = tomllib.loads(pyproject.read_text())["project"]
  return [requirement for requirement in project["optional-dependencies"]["test"]
          if _name_and_specifiers(requirement)[0].lower() not in NOT_IN_LOWEST_RUN]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--test-tools", action="store_true",
                      help="print the test extra's requirements the lowest run installs")
  args = parser.parse_args()
  lines = (test_tools() if args.test_tools
           else [f"{name}=={floor}" for name, floor in floors().items()])
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
