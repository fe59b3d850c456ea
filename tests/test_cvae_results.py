"""Tests for benchmarks/cvae_results.py: run bookkeeping and the table (no training)."""
import json
import os
import sys

import pytest

from benchmarks import cvae_results
from benchmarks import results_files
from tripjax.configs import digits_classifier
from tripjax.metrics import classifier_fd
from tripjax.training import cli


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as file:
    file.writelines(json.dumps(record) + "\n" for record in records)


def _config_of(command):
  """The config that `python -m train.cvae` builds from a command (its own parser)."""
  rest, overrides = cli.split_overrides(command[3:])
  assert rest == [f"--config={cvae_results.CONFIG_PATH}", "--workdir=w"]
  config = cli.load_config(cvae_results.CONFIG_PATH)
  for field, raw in overrides:
    cli.apply_override(config, field, raw)
  return config


def test_train_command_sets_model_hidden_fraction_seed_epochs_and_classifier():
  command = cvae_results.train_command("concat", 0.5, 2, 7, "w", "root/classifier",
                                       extra=("eval.violation_num_samples=200",))
  assert command[1:3] == ["-m", "train.cvae"]
  config = _config_of(command)
  assert config.model.kind == "concat"
  assert config.data.hide_attribute_fraction == 0.5
  assert (config.train.seed, config.train.num_epochs) == (2, 7)
  assert config.eval.classifier_workdir == "root/classifier"
  assert config.eval.violation_num_samples == 200
  assert not config.train.progress_bar
  default = _config_of(cvae_results.train_command("trip", 0.0, 0, 20, "w", "c"))
  assert (default.model.kind, default.data.hide_attribute_fraction) == ("trip", 0.0)
  assert default.eval.violation_num_samples > 0  # the table needs the violation rates
  with pytest.raises(ValueError, match="unknown"):
    cvae_results.train_command("unknown", 0.0, 0, 1, "w", "c")


def test_extra_overrides_take_either_spelling():
  assert cvae_results._override("eval.x=1") == "--config.eval.x=1"
  assert cvae_results._override("--config.eval.x=1") == "--config.eval.x=1"
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    cvae_results._override("eval.x")


def test_run_workdirs_are_distinct_and_share_one_classifier():
  workdirs = {cvae_results.run_workdir("root", model, hidden, seed, epochs)
              for model in cvae_results.MODELS for hidden in (0.0, 0.25, 0.5)
              for seed in (0, 1) for epochs in (1, 20)}
  assert len(workdirs) == len(cvae_results.MODELS) * 3 * 2 * 2
  assert cvae_results.run_workdir("root", "trip", 0.5, 1, 20) == os.path.join(
      "root", "epochs_20", "trip_hidden50_seed1")
  assert cvae_results.run_workdir("r", "concat", 0.0, 0, 3).endswith(
      "concat_hidden0_seed0")
  assert cvae_results.classifier_workdir("root") == os.path.join("root", "classifier")
  assert cvae_results.final_step(20) == 20 * 62  # 4,000 digits in batches of 64


def test_jobs_are_seed_major_and_unique():
  jobs = cvae_results.make_jobs(["trip", "concat"], [0.0, 0.5, 0.5], [0, 1])
  assert jobs[:4] == [("trip", 0.0, 0), ("concat", 0.0, 0), ("trip", 0.5, 0),
                      ("concat", 0.5, 0)]
  assert len(jobs) == 8 == len(set(jobs))


def test_final_eval_needs_the_violation_rates(tmp_path):
  workdir = str(tmp_path)
  assert cvae_results.final_eval(workdir) is None
  _write_metrics(workdir, [
      {"step": 62, "epoch": 1, "split": "train", "bound": -110.0},
      {"step": 310, "epoch": 5, "split": "eval", "test_bound_x_given_y": -100.0},
      {"step": 1240, "epoch": 20, "split": "checkpoint_eval",
       "violation_single_mean": 0.9}])
  assert cvae_results.final_eval(workdir) is None  # no final evaluation yet
  _write_metrics(workdir, [
      {"step": 310, "epoch": 5, "split": "eval", "test_bound_x_given_y": -100.0},
      {"step": 1240, "epoch": 20, "split": "eval", "test_bound_x_given_y": -95.0,
       "violation_single_mean": 0.1, "violation_subset_mean": 0.2}])
  assert cvae_results.final_eval(workdir)["test_bound_x_given_y"] == -95.0


def test_classifier_ready_needs_both_files_and_the_stock_config(tmp_path):
  directory = str(tmp_path)
  assert cvae_results.CLASSIFIER_METADATA_FILENAME == classifier_fd.METADATA_FILENAME
  assert cvae_results.CLASSIFIER_WEIGHTS_FILENAME == classifier_fd.WEIGHTS_FILENAME
  assert cvae_results.classifier_ready(directory) is None
  config = json.loads(json.dumps(digits_classifier.get_config().to_dict()))
  metadata = {"config": config, "test_accuracy": 0.98}
  with open(tmp_path / "classifier.json", "w") as file:
    json.dump(metadata, file)
  assert cvae_results.classifier_ready(directory) is None  # no weights
  (tmp_path / "classifier.msgpack").write_bytes(b"weights")
  assert cvae_results.classifier_ready(directory) == metadata
  config["train"]["num_epochs"] += 1
  with open(tmp_path / "classifier.json", "w") as file:
    json.dump({"config": config, "test_accuracy": 0.98}, file)
  assert cvae_results.classifier_ready(directory) is None  # another config: retrain


def _final_record(model, seed, single, subset, bound):
  record = {"step": 62, "epoch": 1, "split": "eval", "test_bound_x_given_y": bound,
            "test_log_likelihood": bound + 5, "test_kl": 5.0,
            "violation_single_mean": single, "violation_single_any": single,
            "violation_single_digit": single, "violation_subset_mean": subset,
            "violation_subset_any": subset + 0.1,
            "diversity_single_tv": single + 0.3, "diversity_single_requests": 9 + seed,
            "diversity_subset_tv": subset + 0.5, "diversity_subset_requests": 20,
            "diversity_single_tv_floor": 0.07, "diversity_subset_tv_floor": 0.09,
            "classifier_accuracy_digit": 0.98, "classifier_accuracy_even": 0.99,
            "classifier_accuracy_at_least_5": 0.97, "classifier_accuracy": 0.98}
  if model == "trip":
    record["test_elbo"] = bound - 3
  return record


def test_collect_summarize_and_table(tmp_path):
  root = str(tmp_path)
  numbers = {("trip", 0.0, 0): (0.10, 0.20, -90.0),
             ("trip", 0.0, 1): (0.12, 0.22, -92.0),
             ("concat", 0.0, 0): (0.30, 0.40, -91.0),
             ("trip", 0.5, 0): (0.15, 0.25, -93.0)}
  for (model, hidden, seed), (single, subset, bound) in numbers.items():
    workdir = cvae_results.run_workdir(root, model, hidden, seed, 1)
    _write_metrics(workdir, [_final_record(model, seed, single, subset, bound)])
    with open(os.path.join(workdir, "config.json"), "w") as file:
      json.dump({"eval": {"violation_num_samples": 200,
                          "violation_subset_sizes": [2, 3]}}, file)
  jobs = cvae_results.make_jobs(["trip", "concat"], [0.0, 0.5], [0, 1])
  runs = cvae_results.collect(jobs, root=root, epochs=1)
  assert len(runs) == 4  # the unfinished runs are left out
  assert runs[0]["violation_subset_any"] == pytest.approx(0.3)
  assert runs[0]["violation_num_samples"] == 200
  assert "test_elbo" not in next(run for run in runs if run["model"] == "concat")
  rows = cvae_results.summarize(runs, ["trip", "concat"], [0.0, 0.5])
  assert [(row["model"], row["hidden"]) for row in rows] == [
      ("trip", 0.0), ("concat", 0.0), ("trip", 0.5)]  # hidden-major, models side by side
  assert rows[0]["seeds"] == [0, 1]
  assert rows[0]["violation_single_mean_mean"] == pytest.approx(0.11)
  assert rows[0]["test_bound_x_given_y_sd"] == pytest.approx(2 ** 0.5)  # ddof = 1
  assert "test_elbo_mean" not in rows[1]
  assert rows[1]["classifier_accuracy_even_mean"] == pytest.approx(0.99)
  table = cvae_results.markdown_table(rows, runs, 1, "root/classifier",
                                      extra=("eval.violation_num_samples=200",))
  assert ("| model | hidden labels | seeds | violation rate, single attributes (%) | "
          "violation rate, subsets of 2-3 (%) | diversity TV, single attributes | "
          "diversity TV, subsets of 2-3 | test bound log p(x \\| y) | "
          "test ELBO log p(x) | classifier accuracy on real test digits, mean of "
          "attributes (%) |") in table
  assert ("| CVAE-TRIP | 0% | 2 | 11.0 ± 1.4 | 21.0 ± 1.4 | 0.41 ± 0.01 | 0.71 ± 0.01 | "
          "-91.00 ± 1.41 | -94.00 ± 1.41 | 98.0 ± 0.0 |") in table
  assert ("| decoder-only conditioning (concat) | 0% | 1 | 30.0 | 40.0 | "
          "0.60 | 0.90 | -91.00 | n/a | 98.0 |") in table  # one seed: no spread
  assert "(9-10 single-attribute and 20 subset requests per run)" in table
  assert "scores about 0.07 (single) and 0.09 (subset) by chance alone" in table
  assert "| CVAE-TRIP | 50% | 1 | 15.0 |" in table
  assert "1 epoch (62 steps)" in table
  assert "200 random requests" in table
  assert "--config.eval.violation_num_samples=200" in table
  assert "digit 98.0%, even 99.0%, at_least_5 97.0%" in table  # attribute order
  assert "root/classifier" in table
  header = table.splitlines()[2]
  assert header.replace("\\|", "").count("|") == 11  # 10 columns: no stray border


def _fake_command(name, records):
  """A stand-in trainer: logs its call into its workdir, then writes `records`."""
  def command(*args):
    workdir = args[4] if name == "run" else args[0]
    filename = "metrics.jsonl" if name == "run" else "classifier.json"
    payload = records(args)
    script = (f"import json, os\n"
              f"open(os.path.join({workdir!r}, 'calls'), 'a').write('x')\n"
              f"open(os.path.join({workdir!r}, {filename!r}), 'a').write("
              f"{payload!r})\n"
              + ("" if name == "run" else
                 f"open(os.path.join({workdir!r}, 'classifier.msgpack'), 'w')\n"))
    return [sys.executable, "-c", script]
  return command


def test_run_all_trains_the_classifier_first_and_each_run_once(tmp_path, monkeypatch):
  metadata = {"config": json.loads(json.dumps(digits_classifier.get_config().to_dict())),
              "test_accuracy": 0.98}
  monkeypatch.setattr(cvae_results, "classifier_command", _fake_command(
      "classifier", lambda args: json.dumps(metadata)))
  classifier_dir = str(tmp_path / "classifier")

  def run_records(args):
    model, hidden, seed, epochs, workdir, classifier, extra, config_path = args
    # The classifier is there before any run starts.
    assert cvae_results.classifier_ready(classifier) is not None
    assert classifier == classifier_dir and extra == ("eval.x=1",)
    assert config_path == cvae_results.CONFIG_PATH
    return json.dumps(_final_record(model, seed, 0.1, 0.2, -90.0 - seed)) + "\n"

  monkeypatch.setattr(cvae_results, "train_command", _fake_command("run", run_records))
  jobs = cvae_results.make_jobs(["trip", "concat"], [0.5], [0])
  kwargs = dict(root=str(tmp_path), epochs=1, parallel=2, classifier_dir=classifier_dir,
                extra=("eval.x=1",), quiet_file=str(tmp_path / "quiet"),
                poll_seconds=0.05)
  cvae_results.run_all(jobs, **kwargs)
  cvae_results.run_all(jobs, **kwargs)  # everything finished: nothing runs again
  assert (tmp_path / "classifier" / "calls").read_text() == "x"
  for job in jobs:
    workdir = cvae_results.run_workdir(str(tmp_path), *job, 1)
    with open(os.path.join(workdir, "calls")) as file:
      assert file.read() == "x"
  assert len(cvae_results.collect(jobs, root=str(tmp_path), epochs=1)) == 2


def test_main_without_training_writes_the_table(tmp_path, capsys):
  root = str(tmp_path)
  workdir = cvae_results.run_workdir(root, "concat", 0.5, 3, 2)
  _write_metrics(workdir, [_final_record("concat", 3, 0.3, 0.4, -91.0)])
  results_dir = os.path.join(root, "results")
  argv = ["--workdir", root, "--epochs", "2", "--seeds", "3", "--no-train",
          "--results-dir", results_dir]
  assert cvae_results.main(argv) == 0
  with open(os.path.join(root, "results.md")) as file:
    table = file.read()
  assert "| decoder-only conditioning (concat) | 50% | 1 | 30.0 |" in table
  assert table in capsys.readouterr().out
  with open(os.path.join(root, "results.json")) as file:
    results = json.load(file)
  assert results["classifier_workdir"] == os.path.join(root, "classifier")
  assert [run["seed"] for run in results["runs"]] == [3]
  committed = results_files.read(os.path.join(results_dir, "cvae_digits.json"))
  with open(os.path.join(results_dir, "cvae_digits.md")) as file:
    assert file.read() == table == committed["markdown"]
  assert cvae_results.render(committed) == table
  assert committed["command"] == "python -m benchmarks.cvae_results " + " ".join(argv)
  (run,) = committed["runs"]
  assert run["fields"] == {"model.kind": "concat", "data.hide_attribute_fraction": 0.5}
  assert run["seed"] == 3 and run["commits"] == [] and "workdir" not in run


def test_a_run_evaluated_on_validation_reports_its_own_split():
  record = {"violation_single_mean": 0.125, "violation_subset_mean": 0.25,
            "validation_bound_x_given_y": -90.5}
  assert cvae_results.summary_line(record) == (
      "violation rate single 0.125, subsets 0.250, validation bound log p(x|y) -90.50")


CELEBA_CONFIG = "configs/celeba_cvae_trip.py"


def test_the_celeba_table_runs_its_config_and_names_its_images(tmp_path, capsys):
  command = cvae_results.train_command("cvae", 0.5, 1, 30, "w", "attr",
                                       ("data.data_dir=/tfds",), CELEBA_CONFIG)
  rest, overrides = cli.split_overrides(command[3:])
  assert rest == [f"--config={CELEBA_CONFIG}", "--workdir=w"]
  config = cli.load_config(CELEBA_CONFIG)
  for field, raw in overrides:
    cli.apply_override(config, field, raw)
  assert (config.data.name, config.data.data_dir, config.model.kind) == (
      "celeb_a", "/tfds", "cvae")
  assert cvae_results.default_epochs(CELEBA_CONFIG) == 30
  assert cvae_results.final_step(30, CELEBA_CONFIG) is None  # not known offline
  # Without its (hand-trained) attribute classifier: a one-line error, nothing runs.
  root = str(tmp_path)
  with pytest.raises(SystemExit):
    cvae_results.main(["--config", CELEBA_CONFIG, "--workdir", root, "--seeds", "0",
                       "--models", "trip", "--hidden", "0.5"])
  assert "train.train_classifier --config celeba_attribute_classifier" in (
      capsys.readouterr().err)
  assert not os.path.exists(cvae_results.run_workdir(root, "trip", 0.5, 0, 30))
  # The table of finished runs: CelebA's files, its images and classifier named.
  workdir = cvae_results.run_workdir(root, "trip", 0.5, 0, 30)
  _write_metrics(workdir, [dict(_final_record("trip", 0, 0.1, 0.2, -5000.0),
                                step=38130)])
  results_dir = os.path.join(root, "results")
  assert cvae_results.main(["--config", CELEBA_CONFIG, "--workdir", root, "--seeds",
                            "0", "--no-train", "--results-dir", results_dir,
                            "--classifier-workdir", "attr"]) == 0
  committed = results_files.read(os.path.join(results_dir, "cvae_celeba.json"))
  table = committed["markdown"]
  assert cvae_results.render(committed) == table
  assert table.startswith("Conditional VAEs on CelebA 64x64")
  assert "30 epochs (38,130 steps)" in table and "nats per image" in table
  assert "one attribute classifier (attr" in table
  assert "digit" not in table.replace("digit=", "")  # (the digits' requests: none)
  assert "classifier accuracy on real test images" in table
  with pytest.raises(SystemExit):
    cvae_results.main(["--config", "configs/digits_vae_trip.py", "--no-train",
                       "--workdir", root, "--results-dir", results_dir])
  assert "is not a CVAE config" in capsys.readouterr().err
