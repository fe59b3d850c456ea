"""Tests for benchmarks/vae_results.py: run bookkeeping, tables and curves (no training)."""
import json
import os
import sys
import threading

import pytest

from benchmarks import results_files
from benchmarks import vae_results
from tripjax.training import cli


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, vae_results.METRICS_FILENAME), "w") as file:
    file.writelines(json.dumps(record) + "\n" for record in records)


def _config_of(command):
  """The config that `python -m train.vae` builds from a command (its own parser)."""
  rest, overrides = cli.split_overrides(command[3:])
  assert rest == [f"--config={vae_results.CONFIG_PATH}", "--workdir=w"]
  config = cli.load_config(vae_results.CONFIG_PATH)
  for field, raw in overrides:
    cli.apply_override(config, field, raw)
  return config


def test_train_command_sets_the_variant_seed_and_step_schedule():
  command = vae_results.train_command("gmm_F", 2, 700, "w", eval_every=50)
  assert command[1:3] == ["-m", "train.vae"]
  config = _config_of(command)
  assert (config.prior.kind, config.prior.learnable) == ("gmm", False)
  assert (config.train.seed, config.train.num_steps) == (2, 700)
  assert (config.eval.every_steps, config.eval.every_epochs) == (50, 0)
  assert not config.train.progress_bar


def _flat(config):
  return {f"{group}.{name}": value for group, fields in config.to_dict().items()
          if isinstance(fields, dict) for name, value in fields.items()}


def test_every_variant_changes_exactly_its_fields():
  default = _flat(_config_of(vae_results.train_command("trip_L", 0, 10, "w")))
  for name, variant in vae_results.VARIANTS.items():
    config = _flat(_config_of(vae_results.train_command(name, 0, 10, "w")))
    changed = {field for field in config if config[field] != default[field]}
    assert changed == {field for field, _ in variant.overrides}, name
  once = _config_of(vae_results.train_command("trip_L_refit_once", 0, 10, "w"))
  assert once.prior.refit_at_steps == (vae_results.STEPS_PER_EPOCH,)
  assert default["prior.refit_on"] == "samples"  # the quickstart refits on samples


def test_tables_name_known_variants_and_jobs_are_unique_and_seed_major():
  for table in vae_results.TABLES:
    assert set(vae_results.table_variants(table)) <= set(vae_results.VARIANTS)
  jobs = vae_results.make_jobs(["main", "ablation"], [0, 1])
  assert len(jobs) == len(set(jobs))
  main = vae_results.table_variants("main")
  assert jobs[:len(main)] == [(name, 0) for name in main]
  assert ("trip_L", 1) in jobs and jobs.index(("trip_L", 1)) < len(main) * 2
  ablation_only = [name for name in vae_results.table_variants("ablation")
                   if name not in main]
  assert jobs[len(main) * 2:] == ([(name, 0) for name in ablation_only]
                                  + [(name, 1) for name in ablation_only])


def test_run_workdirs_are_distinct_per_variant_seed_and_steps():
  workdirs = {vae_results.run_workdir("root", variant, seed, steps)
              for variant in vae_results.VARIANTS for seed in (0, 1)
              for steps in (10, 20)}
  assert len(workdirs) == len(vae_results.VARIANTS) * 4


def test_final_eval_needs_the_last_step_with_iwae_and_the_curve_every_elbo(tmp_path):
  workdir = str(tmp_path)
  assert vae_results.final_eval(workdir, 20) is None
  assert vae_results.elbo_curve(workdir) == []
  _write_metrics(workdir, [
      {"step": 10, "epoch": 1, "split": "eval", "test_elbo": -120.0},
      {"step": 12, "epoch": 1, "split": "eval", "prior_refit": True},
      {"step": 20, "epoch": 2, "split": "train", "elbo": -110.0}])
  assert vae_results.final_eval(workdir, 20) is None  # interrupted before step 20
  _write_metrics(workdir, [
      {"step": 10, "epoch": 1, "split": "eval", "test_elbo": -120.0},
      {"step": 12, "epoch": 1, "split": "eval", "prior_refit": True},
      {"step": 20, "epoch": 2, "split": "eval", "test_elbo": -100.0,
       "test_iwae_100": -95.0},
      {"step": 20, "epoch": 2, "split": "checkpoint_eval", "test_elbo": -1.0,
       "test_iwae_100": -1.0}])
  assert vae_results.final_eval(workdir, 20)["test_iwae_100"] == -95.0
  assert vae_results.elbo_curve(workdir) == [(10, -120.0), (20, -100.0)]


def test_summary_and_main_table():
  runs = [{"variant": "trip_L", "seed": seed, "test_elbo": elbo, "test_iwae_100": iwae}
          for seed, elbo, iwae in ((0, -100.0, -95.0), (1, -102.0, -97.0))]
  runs.append({"variant": "normal", "seed": 0, "test_elbo": -105.0,
               "test_iwae_100": -99.0})
  rows = vae_results.summarize(runs, vae_results.table_variants("main"))
  assert [row["variant"] for row in rows] == ["normal", "trip_L"]  # table order
  trip = rows[1]
  assert trip["seeds"] == [0, 1]
  assert trip["test_elbo_mean"] == pytest.approx(-101.0)
  assert trip["test_elbo_sd"] == pytest.approx(2 ** 0.5)  # sample sd, ddof = 1
  assert rows[0]["test_iwae_100_sd"] == 0.0
  table = vae_results.markdown_table(rows, steps=2480)
  assert "| TRIP L | 2 | -101.00 ± 1.41 | -96.00 ± 1.41 |" in table
  assert "| N(0, I) | 1 | -105.00 | -99.00 |" in table
  assert "2,480 steps of batch 64 (40 epochs)" in table


def test_ablation_table_reuses_default_runs_and_marks_rows_not_run():
  runs = [{"variant": variant, "seed": 0, "test_elbo": elbo, "test_iwae_100": elbo + 5}
          for variant, elbo in (("trip_L", -100.0), ("gmm_L", -103.0),
                                ("trip_L_refit_off", -104.0))]
  rows = vae_results.summarize(runs)
  table = vae_results.ablation_table(rows, steps=100)
  assert "| refits | off | 1 | -104.00 | -99.00 |" in table
  assert "| refits | once, after epoch 1 | 0 | not run | not run |" in table
  assert "| rank m | 1 (= factorized GMM L) | 1 | -103.00 | -98.00 |" in table
  # The default TRIP L row appears once per ablation group, from the same runs.
  assert table.count("| 1 | -100.00 | -95.00 |") == sum(
      1 for _, entries in vae_results.ABLATION_ROWS
      for variant, _ in entries if variant == "trip_L")


def test_mean_curves_use_the_steps_every_seed_evaluated(tmp_path):
  runs = [{"variant": "trip_L", "seed": 0, "curve": [(100, -110.0), (200, -100.0)]},
          {"variant": "trip_L", "seed": 1,
           "curve": [(62, -150.0), (100, -114.0), (200, -104.0)]},
          {"variant": "normal", "seed": 0, "curve": [(100, -120.0)]}]
  curves = vae_results.mean_curves(runs, ["trip_L", "normal", "gmm_L"])
  assert set(curves) == {"trip_L", "normal"}
  assert curves["trip_L"]["steps"] == [100, 200]
  assert curves["trip_L"]["mean"] == [-112.0, -102.0]
  assert curves["trip_L"]["sd"] == pytest.approx([8 ** 0.5] * 2)
  assert curves["trip_L"]["seeds"] == 2
  path = str(tmp_path / "curves.png")
  vae_results.plot_curves(curves, path, "test")
  with open(path, "rb") as file:
    assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_wait_while_quiet_waits_for_the_file_to_go(tmp_path, capsys):
  quiet_file = tmp_path / "quiet"
  absent = threading.Thread(target=vae_results.wait_while_quiet,
                            args=(str(tmp_path / "absent"), 0.01))
  absent.start()
  absent.join(timeout=10)
  assert not absent.is_alive()  # no file: returns at once
  quiet_file.write_text("")
  waiting = threading.Thread(target=vae_results.wait_while_quiet,
                             args=(str(quiet_file), 0.01))
  waiting.start()
  waiting.join(timeout=0.3)
  assert waiting.is_alive()  # blocked while the file exists
  quiet_file.unlink()
  waiting.join(timeout=10)
  assert not waiting.is_alive()
  assert capsys.readouterr().out == f"waiting: {quiet_file} exists\n"  # said once


def _fake_train_command(variant, seed, steps, workdir, eval_every):
  """A stand-in for train.vae: logs its call and its devices, writes the final eval
  (fails for seed 9)."""
  records = [{"step": eval_every, "epoch": 1, "split": "eval", "test_elbo": -130.0},
             {"step": steps, "epoch": 2, "split": "eval", "test_elbo": -100.0 - seed,
              "test_iwae_100": -95.0 - seed}]
  script = (f"import json, os, sys\n"
            f"open(os.path.join({workdir!r}, 'calls'), 'a').write("
            f"os.environ.get('JAX_NUM_CPU_DEVICES', '-') + "
            f"str('JAX_COMPILATION_CACHE_DIR' in os.environ))\n"
            f"sys.exit(3) if {seed} == 9 else None\n"
            f"open(os.path.join({workdir!r}, 'metrics.jsonl'), 'a').writelines("
            f"json.dumps(record) + '\\n' for record in {records!r})\n")
  return [sys.executable, "-c", script]


def test_run_all_trains_unfinished_runs_once_and_reports_failures(tmp_path, monkeypatch):
  monkeypatch.setattr(vae_results, "train_command", _fake_train_command)
  root = str(tmp_path)
  jobs = [("normal", 0), ("trip_L", 0), ("trip_L", 1)]
  kwargs = dict(root=root, steps=30, eval_every=10, parallel=2,
                quiet_file=str(tmp_path / "quiet"), poll_seconds=0.05)
  vae_results.run_all(jobs, **kwargs)
  vae_results.run_all(jobs, **kwargs)  # everything finished: nothing runs again
  for variant, seed in jobs:
    with open(os.path.join(vae_results.run_workdir(root, variant, seed, 30),
                           "calls")) as file:
      # One call, on one CPU device (parallel runs), with the shared compilation cache.
      assert file.read() == "1True"
  runs = vae_results.collect(jobs + [("gmm_L", 0)], root=root, steps=30)
  assert [(run["variant"], run["test_iwae_100"]) for run in runs] == [
      ("normal", -95.0), ("trip_L", -95.0), ("trip_L", -96.0)]  # gmm_L never ran
  assert runs[2]["curve"] == [(10, -130.0), (30, -101.0)]
  with pytest.raises(RuntimeError, match="gmm_L seed 9 failed"):
    vae_results.run_all([("gmm_L", 9)], **kwargs)


def test_table_has_a_classifier_fd_column_when_measured():
  runs = [{"variant": "gmm_L", "seed": seed, "test_elbo": -100.0, "test_iwae_100": -95.0,
           "classifier_fd": fd} for seed, fd in ((0, 30.0), (1, 34.0))]
  table = vae_results.markdown_table(vae_results.summarize(runs), steps=10)
  assert "classifier FD (5,000 samples)" in table
  assert "| GMM L (factorized) | 2 | -100.00 ± 0.00 | -95.00 ± 0.00 | 32.00 ± 2.83 |" in table
  # every other prior of the main table is a row that says it has not run
  assert "| TRIP L + 4 flows | 0 | not run | not run | not run |" in table


def test_classifier_fd_of_a_run_is_read_back_from_its_metrics(tmp_path):
  workdir = str(tmp_path)
  _write_metrics(workdir, [
      {"step": 7, "epoch": 1, "split": "classifier_fd", "classifier_fd": 1.0,
       "num_samples": 100, "seed": 0},  # other settings: not this measurement
      {"step": 7, "epoch": 1, "split": "classifier_fd", "classifier_fd": 12.5,
       "num_samples": vae_results.FD_NUM_SAMPLES, "seed": 0}])
  assert vae_results.classifier_fd_of_run(workdir, 7, classifier_params=None) == 12.5


def test_tables_add_the_early_elbo_read_off_the_curve(tmp_path):
  step = vae_results.EARLY_STEP
  workdir = vae_results.run_workdir(str(tmp_path), "trip_L", 0, 2 * step)
  _write_metrics(workdir, [
      {"step": step, "epoch": 9, "split": "eval", "test_elbo": -104.0},
      {"step": 2 * step, "epoch": 19, "split": "eval", "test_elbo": -100.0,
       "test_iwae_100": -95.0}])
  runs = vae_results.collect([("trip_L", 0)], root=str(tmp_path), steps=2 * step)
  assert runs[0][vae_results.EARLY_METRIC] == -104.0
  rows = vae_results.summarize(runs)
  table = vae_results.markdown_table(rows, steps=2 * step)
  assert f"| test ELBO at step {step} |" in table
  assert "| TRIP L | 1 | -100.00 | -95.00 | -104.00 |" in table


def test_run_all_records_the_commit_each_run_starts_at(tmp_path, monkeypatch):
  monkeypatch.setattr(vae_results, "train_command", _fake_train_command)
  root = str(tmp_path)
  vae_results.run_all([("normal", 0)], root=root, steps=30, eval_every=10, parallel=1,
                      quiet_file=str(tmp_path / "quiet"), poll_seconds=0.05)
  (run,) = vae_results.collect([("normal", 0)], root=root, steps=30)
  (record,) = run["commits"]
  assert record["commit"] == results_files.git_state()["commit"]
  assert record["from_step"] == 0
  assert run["fields"] == {"prior.kind": "normal"}
