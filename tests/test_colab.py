"""The colab/ notebooks: valid nbformat 4 JSON without outputs, every name they take
from tripjax exists, and each runs as written (small settings): Figure 1 on its own,
Figures 4 and 5 on a tiny VAE-TRIP trained here in seconds, Table 3 on a tiny
CVAE-TRIP.
"""
import ast
import importlib
import json
import pathlib
import re
import warnings

import numpy as np
import pytest

from tripjax.configs import digits_cvae_trip
from tripjax.configs import digits_vae_trip
from tripjax.training import cvae
from tripjax.training import gan
from tripjax.training import vae

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = ("figure1_trip_2d.ipynb", "figure4_learned_prior.ipynb",
             "figure5_mode_hopping.ipynb", "table3_conditional.ipynb")
OWN_PACKAGES = ("tripjax", "train", "configs")
# Figure 1 in the test: a coarse grid and few samples (the notebook uses 300 and 3000).
FIGURE1_OVERRIDES = {"GRID_SIZE": 64, "NUM_SAMPLES": 200}


def _load(name):
  return json.loads((COLAB / name).read_text())


def _source(cell):
  source = cell["source"]
  return source if isinstance(source, str) else "".join(source)


def _code_cells(notebook):
  return [_source(cell) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _is_install_cell(source):
  return "google.colab" in source


def _as_python(source):
  """IPython `!shell` and `%magic` lines become `pass` (same indentation)."""
  return re.sub(r"^(\s*)[!%].*$", r"\1pass", source, flags=re.M)


def test_every_notebook_is_there():
  assert sorted(p.name for p in COLAB.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_nbformat4_without_outputs(name):
  notebook = _load(name)
  assert notebook["nbformat"] == 4
  assert isinstance(notebook["nbformat_minor"], int)
  assert isinstance(notebook["metadata"], dict)
  assert notebook["metadata"]["kernelspec"]["language"] == "python"
  cells = notebook["cells"]
  assert cells
  for cell in cells:
    assert cell["cell_type"] in ("markdown", "code")
    assert isinstance(cell["metadata"], dict)
    source = cell["source"]
    assert isinstance(source, str) or all(isinstance(line, str) for line in source)
    if notebook["nbformat_minor"] >= 5:
      assert isinstance(cell["id"], str)
    if cell["cell_type"] == "code":
      assert cell["outputs"] == []
      assert cell["execution_count"] is None
    else:
      assert "outputs" not in cell and "execution_count" not in cell
  # Opens with what it reproduces, then the Colab install cell.
  assert cells[0]["cell_type"] == "markdown"
  assert re.search(r"(Figure|Table) \d", _source(cells[0]))
  install = _code_cells(notebook)[0]
  assert _is_install_cell(install)
  assert 'TRIPJAX_SOURCE = ""' in install


@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.parametrize("source,wheels,expected", [
    ("", ["/content/tripjax-0.1.0-py3-none-any.whl"],
     "/content/tripjax-0.1.0-py3-none-any.whl"),
    ("git+https://example.org/tripjax.git", [], "git+https://example.org/tripjax.git"),
    ("", [], None),
])
def test_install_cell_on_colab_installs_the_wheel_or_the_source(
    name, source, wheels, expected, monkeypatch):
  """The install cell as Colab runs it: pip gets the uploaded wheel or TRIPJAX_SOURCE;
  with neither, a clear error. Outside Colab it does nothing (the other tests)."""
  import subprocess as subprocess_module  # pylint: disable=import-outside-toplevel
  import sys as sys_module  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  calls = []
  monkeypatch.setitem(sys_module.modules, "google.colab", types.ModuleType("colab"))
  monkeypatch.setattr(subprocess_module, "run",
                      lambda command, check: calls.append(command))
  monkeypatch.setattr("glob.glob", lambda pattern: list(wheels))
  install = _code_cells(_load(name))[0].replace('TRIPJAX_SOURCE = ""',
                                                f"TRIPJAX_SOURCE = {source!r}")
  if expected is None:
    with pytest.raises(RuntimeError, match="Upload tripjax-"):
      exec(compile(install, name, "exec"), {})  # pylint: disable=exec-used
    assert not calls
  else:
    exec(compile(install, name, "exec"), {})  # pylint: disable=exec-used
    assert calls == [[sys_module.executable, "-m", "pip", "install", "-q", expected]]


def _imported_modules(tree):
  """{alias: module name} of `import a.b as c` / `from a import b` bound to modules."""
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        module = importlib.import_module(alias.name)
        if alias.asname:
          aliases[alias.asname] = alias.name
        else:
          top = alias.name.split(".")[0]
          aliases[top] = top
        assert module is not None
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, "relative import in a notebook"
      module = importlib.import_module(node.module)
      for alias in node.names:
        bound = alias.asname or alias.name
        if hasattr(module, alias.name):
          value = getattr(module, alias.name)
        else:  # a submodule not imported by its package
          value = importlib.import_module(f"{node.module}.{alias.name}")
        if isinstance(value, type(module)):
          aliases[bound] = value.__name__
  return aliases


def _dotted(node):
  """'a.b.c' for an Attribute/Name chain, else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    return ".".join([node.id] + parts[::-1])
  return None


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_code_compiles_and_its_names_exist(name):
  code = "\n\n".join(_as_python(source) for source in _code_cells(_load(name)))
  compile(code, name, "exec")
  tree = ast.parse(code)
  aliases = _imported_modules(tree)
  own = {alias: module for alias, module in aliases.items()
         if module.split(".")[0] in OWN_PACKAGES}
  assert own, f"{name} uses nothing from tripjax"
  # Every attribute taken from one of our modules exists: vae.build_model,
  # loop.restore_checkpoint, trip.sample, configs.digits_vae_trip.__file__, ...
  checked = set()
  for node in ast.walk(tree):
    dotted = _dotted(node) if isinstance(node, ast.Attribute) else None
    if not dotted or dotted.split(".")[0] not in own:
      continue
    head, *rest = dotted.split(".")
    value = importlib.import_module(own[head])
    for attribute in rest:
      if isinstance(value, type(importlib)) and not hasattr(value, attribute):
        value = importlib.import_module(f"{value.__name__}.{attribute}")
      else:
        assert hasattr(value, attribute), f"{name}: {dotted} does not exist"
        value = getattr(value, attribute)
      if not isinstance(value, type(importlib)):
        break  # attributes of objects (e.g. a config) are not checked statically
    checked.add(dotted)
  assert checked


@pytest.mark.parametrize("name", ["figure4_learned_prior.ipynb",
                                  "figure5_mode_hopping.ipynb"])
def test_training_command_matches_the_quickstart(name):
  code = "".join(_code_cells(_load(name)))
  assert '"-m", "tripjax.train.vae"' in code and '"--config", "digits_vae_trip"' in code
  # The overrides it passes are fields of the quickstart config.
  config = digits_vae_trip.get_config()
  for field in re.findall(r"--config\.([\w.]+)=", code):
    section, key = field.split(".")
    assert key in config[section], field


def test_table3_training_command_matches_the_cvae_quickstart():
  code = "".join(_code_cells(_load("table3_conditional.ipynb")))
  assert '"-m", "tripjax.train.cvae"' in code and '"--config", "digits_cvae_trip"' in code
  config = digits_cvae_trip.get_config()
  for field in re.findall(r"--config\.([\w.]+)=", code):
    section, key = field.split(".")
    assert key in config[section], field


def run_notebook(name: str, overrides: dict) -> dict:
  """Executes a notebook's code cells top to bottom in one namespace (matplotlib off
  screen) and returns the namespace. Each name in `overrides` replaces the notebook's
  value right after the cell that first assigns it (its settings cell), so tests run
  the notebooks as written with small settings. The install cell runs too (it does
  nothing outside Colab)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")

  namespace = {"__name__": "__main__"}
  pending = dict(overrides)
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*non-interactive.*")
    for source in _code_cells(_load(name)):
      exec(compile(_as_python(source), name, "exec"), namespace)  # pylint: disable=exec-used
      for variable in [v for v in pending if re.search(rf"^{v} =", source, re.M)]:
        namespace[variable] = pending.pop(variable)
  assert not pending, f"{name} never assigns {sorted(pending)}"
  return namespace


def test_figure1_notebook_runs():
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  namespace = run_notebook("figure1_trip_2d.ipynb", FIGURE1_OVERRIDES)
  try:
    grid = FIGURE1_OVERRIDES["GRID_SIZE"]
    assert namespace["density"].shape == (grid, grid)
    assert np.all(np.isfinite(namespace["density"]))
    # The plotted density and the exact marginal p(z1) both integrate to ~1.
    assert namespace["density_integral"] == pytest.approx(1.0, abs=2e-3)
    assert namespace["marginal_integral"] == pytest.approx(1.0, abs=2e-3)
    # p(z1) with z2 = NaN equals the 2-D grid summed over z2.
    assert namespace["marginal_max_error"] < 1e-3
    assert namespace["node_weights"].shape == (5, 5)
    assert namespace["node_weights"].sum() == pytest.approx(1.0, abs=1e-5)
    samples = namespace["samples"]
    assert samples.shape == (FIGURE1_OVERRIDES["NUM_SAMPLES"], 2)
    assert np.all(np.isfinite(samples))
    assert np.all(np.abs(samples) < namespace["LIMIT"] + 1.0)
    figure = plt.gcf()
    assert len(figure.axes) >= 3
  finally:
    plt.close("all")


@pytest.fixture(scope="module")
def tiny_trip_run(tmp_path_factory):
  """A workdir with a few-step VAE-TRIP of the quickstart's kind (latent 4)."""
  from test_training import tiny_config  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("colab") / "run")
  config = tiny_config(num_epochs=1)
  config.eval.iwae_samples = 2
  config.eval.iwae_samples_per_chunk = 2
  vae.train_and_evaluate(config, workdir)
  return workdir, config


@pytest.fixture(scope="module")
def tiny_gan_run(tmp_path_factory):
  """A workdir with a few-step WGAN-GP-TRIP of the GAN quickstart's kind (latent 4)."""
  from test_gan_training import tiny_config  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("colab_gan") / "run")
  config = tiny_config()
  config.train.num_epochs = 1
  gan.train_and_evaluate(config, workdir)
  return workdir, config


def test_figure4_notebook_runs_on_a_trained_run(tiny_trip_run, tiny_gan_run):
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  workdir, config = tiny_trip_run
  gan_workdir, gan_config = tiny_gan_run
  namespace = run_notebook("figure4_learned_prior.ipynb",
                           {"WORKDIR": workdir, "GRID_SIZE": 40,
                            "GAN_WORKDIR": gan_workdir, "NUM_PRIOR_SAMPLES": 200})
  try:
    # The WGAN-GP-TRIP's panel (the last figure): its learned prior's exact marginal.
    assert namespace["gan_model"].position.step == 3  # 96 digits / (16 x 2) per step
    assert namespace["gan_samples"].shape == (200, gan_config.model.latent_dim)
    assert namespace["gan_log_density"].shape == (40, 40)
    assert np.all(np.isfinite(namespace["gan_log_density"]))
    assert 0.0 < namespace["gan_density_integral"] < 1.0 + 1e-3
    assert namespace["position"].step == 4  # 64 digits / batch 16, one epoch
    assert namespace["z_test"].shape == (500, config.model.latent_dim)
    log_density = namespace["log_density"]
    assert log_density.shape == (40, 40) and np.all(np.isfinite(log_density))
    # The window holds part of the 2-D marginal's mass (an exact marginal integrates
    # to 1 over the plane; tests/test_prior.py checks that).
    assert 0.0 < namespace["density_integral"] < 1.0 + 1e-3
    assert len(plt.gcf().axes) == 4  # two panels and their colour bars
  finally:
    plt.close("all")


def test_figure5_notebook_runs_on_a_trained_run(tiny_trip_run):
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  workdir, config = tiny_trip_run
  namespace = run_notebook("figure5_mode_hopping.ipynb", {
      "WORKDIR": workdir, "NUM_TRAJECTORIES": 3, "NUM_HOPS": 4, "NUM_RESAMPLED": 2})
  try:
    images = namespace["images"]
    assert images.shape == (3, 5, 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert namespace["grid"].dtype == np.uint8
    assert namespace["latent_model"].position.step == 4
    assert len(plt.gcf().axes) == 1
  finally:
    plt.close("all")


def test_table3_notebook_runs_on_a_trained_cvae(tmp_path):
  """A 4-step CVAE-TRIP (no violation metric, so no classifier to train)."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from test_cvae_training import tiny_config  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path / "cvae")
  config = tiny_config(max_steps=4)
  config.eval.violation_num_samples = 0
  cvae.train_and_evaluate(config, workdir)
  namespace = run_notebook("table3_conditional.ipynb",
                           {"WORKDIR": workdir, "NUM_COLUMNS": 4})
  try:
    rows = namespace["ROWS"]
    assert rows == namespace["DIGIT_ROWS"] and "even=1" in rows
    images = namespace["images"]
    assert images.shape == (4 * len(rows), 28, 28, 1)
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert namespace["grid"].dtype == np.uint8
    assert namespace["labels"][rows.index("even=1")] == "even=1"
    assert namespace["labels"][rows.index("")] == "(nothing requested)"
    assert namespace["sampler"].position.step == 4
    assert len(plt.gcf().axes) == 1
  finally:
    plt.close("all")
