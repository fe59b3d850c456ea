"""The committed results files (benchmarks/results_files.py) and README's tables.

`test_readme_shows_every_committed_results_table` is the check of issue 22: every
`results/<study>.md` is what its `.json` renders to (with the script named in it), and
README contains it verbatim.
"""
import glob
import importlib
import os
import subprocess

import pytest

from benchmarks import results_files
from benchmarks import vae_results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _committed_results() -> list[str]:
  return sorted(glob.glob(os.path.join(REPO_ROOT, results_files.RESULTS_DIR, "*.json")))


@pytest.mark.parametrize("json_path", _committed_results(),
                         ids=lambda path: os.path.basename(path))
def test_readme_shows_every_committed_results_table(json_path):
  results = results_files.read(json_path)
  with open(json_path[:-len(".json")] + ".md") as file:
    markdown = file.read()
  module = importlib.import_module(results["script"])
  assert module.render(results) == markdown == results["markdown"]
  assert results["runs"], "a results file with no runs"
  for run in results["runs"]:
    assert {"fields", "seed", "commits"} <= set(run)
  with open(os.path.join(REPO_ROOT, "README.md")) as file:
    readme = file.read()
  assert markdown in readme, (
      f"README does not show {os.path.basename(json_path)[:-5]}.md verbatim")


def _git(repo, *args):
  subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_record_start_names_the_commit_the_dirty_code_and_the_step(tmp_path):
  repo = tmp_path / "repo"
  (repo / "tripjax").mkdir(parents=True)
  (repo / "tripjax" / "a.py").write_text("x = 1\n")
  (repo / "README.md").write_text("r\n")
  _git(repo, "init", "-q")
  _git(repo, "add", ".")
  _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
  head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                        capture_output=True, text=True).stdout.strip()
  workdir = str(tmp_path / "run")
  first = results_files.record_start(workdir, repo=str(repo))
  assert (first["commit"], first["dirty"], first["from_step"]) == (head, False, 0)
  (repo / "README.md").write_text("changed docs only\n")
  for name in ("40", "1005", "tmp_checkpoint"):
    os.makedirs(os.path.join(workdir, "checkpoints", name))
  assert results_files.record_start(workdir, repo=str(repo))["dirty"] is False
  (repo / "tripjax" / "a.py").write_text("x = 2\n")
  third = results_files.record_start(workdir, repo=str(repo))
  assert (third["dirty"], third["from_step"]) == (True, 1005)
  assert [record["from_step"] for record in results_files.run_commits(workdir)] == [
      0, 1005, 1005]
  assert results_files.git_state(str(tmp_path))["commit"] is None  # not a checkout


def test_vae_results_files_render_back_and_keep_no_workdir(tmp_path):
  runs = [{"variant": variant, "fields": {}, "seed": seed, "workdir": "/x",
           "step": 30, "test_elbo": elbo, "test_iwae_100": elbo + 5,
           "curve": [(10, elbo - 9), (30, elbo)], "commits": []}
          for variant, seed, elbo in (("trip_L", 0, -100.0), ("trip_L", 1, -101.5),
                                      ("normal", 0, -103.25))]
  results_dir = str(tmp_path / "results")
  for table in vae_results.TABLES:
    markdown = vae_results.write_results_files(table, runs, 30, "cmd", results_dir)
    study = vae_results.STUDIES[table]
    results = results_files.read(os.path.join(results_dir, f"{study}.json"))
    with open(os.path.join(results_dir, f"{study}.md")) as file:
      assert file.read() == markdown == results["markdown"]
    assert vae_results.render(results) == markdown
    assert all("workdir" not in run for run in results["runs"])
    assert results["script"] == "benchmarks.vae_results" and results["command"] == "cmd"
  assert "| TRIP L | 2 | -100.75 ± 1.06 |" in vae_results.render(
      results_files.read(os.path.join(results_dir, "vae_digits.json")))


def test_write_refuses_a_table_without_its_last_newline(tmp_path):
  with pytest.raises(ValueError, match="newline"):
    results_files.write("s", script="m", command="c", markdown="| a |",
                        runs=[{"seed": 0}], results_dir=str(tmp_path))


def test_gan_results_files_render_back(tmp_path):
  from benchmarks import gan_results
  runs = [{"prior": prior, "fields": {}, "seed": seed, "workdir": "/x", "step": 1000,
           "classifier_fd": fd, "commits": []}
          for prior, seed, fd in (("trip_L", 0, 50.0), ("trip_L", 1, 54.0),
                                  ("normal", 0, 60.0))]
  epochs = gan_results.DEFAULT_EPOCHS
  markdown = gan_results.write_results_files(runs, epochs, "cmd", str(tmp_path))
  results = results_files.read(str(tmp_path / "gan_digits.json"))
  assert gan_results.render(results) == markdown == results["markdown"]
  assert "| TRIP L | 2 | 52.00 ± 2.83 |" in markdown
  assert (tmp_path / "gan_digits.md").read_text() == markdown
  gan_results.write_results_files(runs, epochs + 1, "cmd", str(tmp_path))
  assert (tmp_path / f"gan_digits_{epochs + 1}epochs.json").exists()


def test_prior_gradients_table_has_scores_variance_over_each_row():
  from benchmarks import prior_gradients
  runs = (prior_gradients.records("4, 10, 4", "cos", {"score": [1e-3, 2.0, 0.5],
                                                      "pathwise": [1e-3, 0.5, 0.01]})
          + prior_gradients.records("16, 10, 8", "mlp", {"score": [3.0, 6.0, 9.0]}))
  table = prior_gradients.render({"batch": 64, "estimates": 1000, "gan_estimates": 0,
                                  "runs": runs})
  assert "from B = 64 draws" in table and "1,000 estimates" in table
  assert "| 4, 10, 4 | cos | score | 1.00e-03 | 2 | 0.5 | 1.0 | 1.0 |" in table
  assert "| 4, 10, 4 | cos | pathwise | 1.00e-03 | 0.5 | 0.01 | 4.0 | 50.0 |" in table
  assert "| 16, 10, 8 | mlp | score | 3 | 6 | 9 | 1.0 | 1.0 |" in table


def test_a_sweep_with_no_finished_run_writes_nothing(tmp_path):
  """results_files.write refuses an empty table (a committed file must not be replaced
  by one), and so does every results script that reaches it, e.g. gan_modes."""
  from benchmarks import gan_modes
  results_dir = tmp_path / "results"
  with pytest.raises(SystemExit, match="no finished run for results/study_x"):
    results_files.write("study_x", script="benchmarks.x", command="c", markdown="t\n",
                        runs=[], results_dir=str(results_dir))
  with pytest.raises(SystemExit, match="nothing written"):
    gan_modes.main(["--workdir", str(tmp_path / "runs"), "--no-train", "--results-dir",
                    str(results_dir), "--datasets", "ring8", "--priors", "normal",
                    "--latent-dims", "2", "--seeds", "0"])
  assert not results_dir.exists()
