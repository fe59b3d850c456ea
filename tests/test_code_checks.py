"""The habits CI keeps: lint (ruff, with import sorting), types (mypy), and the layout
rules of tripjax/ (no task module imports another, the library imports no stock config,
private JAX in one module)."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRIPJAX = ROOT / "tripjax"
TASK_MODULES = ("vae", "gan", "cvae", "classifier")


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Every module `path` imports, as dotted names (`from a import b` gives a.b)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "ruff", "check", "tripjax", "train", "configs"],
    [sys.executable, "-m", "mypy"],
], ids=["ruff", "mypy"])
def test_lint_and_types_pass(command):
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


@pytest.mark.parametrize("task", TASK_MODULES)
def test_no_task_module_imports_another(task):
  imported = _imported_modules(TRIPJAX / "training" / f"{task}.py")
  others = {f"tripjax.training.{other}" for other in TASK_MODULES if other != task}
  assert not imported & others


def test_the_library_imports_no_stock_config_and_private_jax_in_one_module():
  configs, private = [], []
  for path in sorted(TRIPJAX.rglob("*.py")):
    imported = _imported_modules(path)
    if any(name.startswith("tripjax.configs") for name in imported):
      configs.append(path.name)
    if any(name.startswith("jax._src") for name in imported):
      private.append(path.name)
  assert configs == []
  assert private == ["jax_internals.py"]
