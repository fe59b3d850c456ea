"""The README's tripjax.prior example runs as written and its shapes are as stated."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
  return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_prior_example_runs():
  (example,) = [b for b in _python_blocks() if "tripjax.prior" in b]
  namespace = {}
  exec(compile(example, str(README), "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["x"].shape == (128, 114)
  assert namespace["log_p"].shape == (128,)
  assert namespace["post"].shape == (128, 114, 10)
  assert namespace["cond"].shape == (128, 114)
  np.testing.assert_array_equal(namespace["cond"][:, :100], namespace["x"][:, :100])
  attributes = np.asarray(namespace["cond"][:, 100:])
  assert set(np.unique(attributes)) <= {0.0, 1.0}
  assert np.all(np.isfinite(np.asarray(namespace["log_p_z"])))
  # p(z) = Σ_y p(z, y) >= p(z, y) for the discrete attributes y.
  assert np.all(np.asarray(namespace["log_p_z"]) >= np.asarray(namespace["log_p"]) - 1e-4)


def _bash_blocks():
  return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def _normalized(command: str) -> str:
  """A command as CI and README both write it: no venv path, pip's --quiet dropped,
  `pip` run as `python -m pip`."""
  command = command.strip().replace(".venv/bin/", "").replace(" --quiet", "")
  return re.sub(r"^pip ", "python -m pip ", command)


def test_readme_commands_match_ci():
  """README's test command is what CI runs after creating its virtualenv: the same
  install of the test extra and the same test command, whole."""
  (test_block,) = [block for block in _bash_blocks() if "pytest" in block]
  readme_steps = [_normalized(step) for step in test_block.strip().split("&&")]
  ci = (README.parent / ".ci" / "run").read_text().splitlines()
  ci_steps = [_normalized(line) for line in ci
              if line.startswith("python -m ") and "--upgrade pip" not in line]
  assert readme_steps == ci_steps
  assert readme_steps[-1] == "python -m pytest -q"


def test_readme_quickstart_installs_and_trains_the_offline_vae():
  quickstart = _bash_blocks()[0]
  steps = [step.strip() for step in quickstart.strip().split("&&")]
  assert steps[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -e ."]
  assert steps[-1] == (".venv/bin/python -m train.vae --config configs/digits_vae_trip.py"
                       " --workdir runs/digits_vae_trip")
  assert (README.parent / "configs" / "digits_vae_trip.py").is_file()
