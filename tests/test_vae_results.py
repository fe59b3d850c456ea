"""Tests for benchmarks/vae_results.py: run bookkeeping and the table (no training)."""
import json
import os
import sys

import pytest

from benchmarks import vae_results


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, vae_results.METRICS_FILENAME), "w") as file:
    file.writelines(json.dumps(record) + "\n" for record in records)


def test_train_command_sets_prior_seed_and_epochs():
  command = vae_results.train_command("gmm_F", 2, 7, "runs/x")
  assert command[1:3] == ["-m", "train.vae"]
  assert "--config=configs/digits_vae_trip.py" in command
  for flag in ("--workdir=runs/x", "--config.prior.kind=gmm",
               "--config.prior.learnable=False", "--config.train.seed=2",
               "--config.train.num_epochs=7"):
    assert flag in command
  assert "--config.prior.learnable=True" in vae_results.train_command("trip_L", 0, 1, "w")


def test_run_workdirs_are_distinct_per_prior_seed_and_epochs():
  workdirs = {vae_results.run_workdir("root", prior, seed, epochs)
              for prior in vae_results.PRIOR_VARIANTS for seed in (0, 1)
              for epochs in (10, 20)}
  assert len(workdirs) == len(vae_results.PRIOR_VARIANTS) * 4


def test_final_eval_needs_the_last_epoch_with_iwae(tmp_path):
  workdir = str(tmp_path)
  assert vae_results.final_eval(workdir, 2) is None
  _write_metrics(workdir, [
      {"step": 10, "epoch": 1, "split": "eval", "test_elbo": -120.0},
      {"step": 20, "epoch": 2, "split": "train", "elbo": -110.0}])
  assert vae_results.final_eval(workdir, 2) is None  # interrupted in epoch 2
  _write_metrics(workdir, [
      {"step": 20, "epoch": 2, "split": "eval", "test_elbo": -100.0,
       "test_iwae_100": -95.0},
      {"step": 20, "epoch": 2, "split": "checkpoint_eval", "test_elbo": -1.0,
       "test_iwae_100": -1.0}])
  assert vae_results.final_eval(workdir, 2)["test_iwae_100"] == -95.0


def test_summary_and_markdown_table():
  runs = [{"prior": "trip_L", "seed": seed, "test_elbo": elbo, "test_iwae_100": iwae}
          for seed, elbo, iwae in ((0, -100.0, -95.0), (1, -102.0, -97.0))]
  runs.append({"prior": "normal", "seed": 0, "test_elbo": -105.0,
               "test_iwae_100": -99.0})
  rows = vae_results.summarize(runs)
  assert [row["prior"] for row in rows] == ["normal", "trip_L"]  # table order
  trip = rows[1]
  assert trip["seeds"] == [0, 1]
  assert trip["test_elbo_mean"] == pytest.approx(-101.0)
  assert trip["test_elbo_sd"] == pytest.approx(2 ** 0.5)  # sample sd, ddof = 1
  assert rows[0]["test_iwae_100_sd"] == 0.0
  table = vae_results.markdown_table(rows, epochs=20)
  assert "| TRIP L | 2 | -101.00 ± 1.41 | -96.00 ± 1.41 |" in table
  assert "| N(0, I) | 1 | -105.00 ± 0.00 | -99.00 ± 0.00 |" in table
  assert "20 epochs" in table


def test_wait_while_quiet_returns_when_the_file_is_gone(tmp_path):
  vae_results.wait_while_quiet(str(tmp_path / "absent"), poll_seconds=0.01)


def _fake_train_command(prior, seed, epochs, workdir):
  """A stand-in for train.vae: logs its call, writes the final eval (fails for seed 9)."""
  record = {"step": 5, "epoch": epochs, "split": "eval", "test_elbo": -100.0 - seed,
            "test_iwae_100": -95.0 - seed}
  script = (f"import json, os, sys\n"
            f"open(os.path.join({workdir!r}, 'calls'), 'a').write('x')\n"
            f"sys.exit(3) if {seed} == 9 else None\n"
            f"open(os.path.join({workdir!r}, 'metrics.jsonl'), 'a').write("
            f"json.dumps({record!r}) + '\\n')\n")
  return [sys.executable, "-c", script]


def test_run_all_trains_unfinished_runs_once_and_reports_failures(tmp_path, monkeypatch):
  monkeypatch.setattr(vae_results, "train_command", _fake_train_command)
  root = str(tmp_path)
  jobs = [("normal", 0), ("trip_L", 0), ("trip_L", 1)]
  kwargs = dict(root=root, epochs=3, parallel=2, quiet_file=str(tmp_path / "quiet"),
                poll_seconds=0.05)
  vae_results.run_all(jobs, **kwargs)
  vae_results.run_all(jobs, **kwargs)  # everything finished: nothing runs again
  for prior, seed in jobs:
    with open(os.path.join(vae_results.run_workdir(root, prior, seed, 3), "calls")) as f:
      assert f.read() == "x"
  runs = vae_results.collect(jobs, root=root, epochs=3)
  assert [run["test_iwae_100"] for run in runs] == [-95.0, -95.0, -96.0]
  with pytest.raises(RuntimeError, match="gmm_L seed 9 failed"):
    vae_results.run_all([("gmm_L", 9)], **kwargs)


def test_table_has_a_classifier_fd_column_when_measured(tmp_path):
  runs = [{"prior": "gmm_L", "seed": seed, "test_elbo": -100.0, "test_iwae_100": -95.0,
           "classifier_fd": fd} for seed, fd in ((0, 30.0), (1, 34.0))]
  table = vae_results.markdown_table(vae_results.summarize(runs), epochs=10)
  assert "classifier FD (5,000 samples)" in table
  assert "| GMM L | 2 | -100.00 ± 0.00 | -95.00 ± 0.00 | 32.00 ± 2.83 |" in table


def test_classifier_fd_of_a_run_is_read_back_from_its_metrics(tmp_path):
  workdir = str(tmp_path)
  _write_metrics(workdir, [
      {"step": 7, "epoch": 1, "split": "classifier_fd", "classifier_fd": 1.0,
       "num_samples": 100, "seed": 0},  # other settings: not this measurement
      {"step": 7, "epoch": 1, "split": "classifier_fd", "classifier_fd": 12.5,
       "num_samples": vae_results.FD_NUM_SAMPLES, "seed": 0}])
  assert vae_results.classifier_fd_of_run(workdir, 7, classifier_params=None) == 12.5
