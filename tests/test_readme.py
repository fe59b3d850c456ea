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


def test_readme_commands_match_ci():
  text = README.read_text()
  ci = (README.parent / ".ci" / "run").read_text()
  assert "python -m pytest -q" in text and "python -m pytest -q" in ci
  assert "configs/digits_vae_trip.py" in text
