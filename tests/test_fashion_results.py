"""benchmarks/fashion_results.py (the Fashion-MNIST prior comparison) and the
Fashion-MNIST configs: commands, table, results files, and a 2-step run of
configs/fashion_vae_trip.py on a written IDX fixture."""
import argparse
import gzip
import json
import os

import numpy as np
import pytest

from benchmarks import fashion_results
from benchmarks import results_files
from tripjax import data as data_lib
from tripjax.training import classifier
from tripjax.training import cli
from tripjax.training import vae


def _config_of(command):
  rest, overrides = cli.split_overrides(command[3:])
  assert rest == [f"--config={fashion_results.CONFIG_PATH}", "--workdir=w"]
  config = cli.load_config(fashion_results.CONFIG_PATH)
  for field, raw in overrides:
    cli.apply_override(config, field, raw)
  return config


def _flat(config):
  return {f"{group}.{name}": value for group, fields in config.to_dict().items()
          if isinstance(fields, dict) for name, value in fields.items()}


def test_train_command_pins_the_data_and_the_evaluation():
  config = _config_of(fashion_results.train_command("gmm_F", 2, 700, "w", eval_every=50,
                                                    data_dir="/d"))
  assert (config.prior.kind, config.prior.learnable) == ("gmm", False)
  assert (config.train.seed, config.train.num_steps) == (2, 700)
  assert (config.eval.every_steps, config.eval.every_epochs) == (50, 0)
  assert config.data.data_dir == "/d"
  assert config.data.num_eval_examples == fashion_results.EVAL_EXAMPLES
  assert config.eval.split == "test" and config.eval.iwae_samples == 100


def test_every_available_variant_changes_exactly_its_fields():
  default = _flat(_config_of(fashion_results.train_command("trip_L", 0, 10, "w")))
  checked = 0
  for name, variant in fashion_results.VARIANTS.items():
    if not fashion_results.variant_available(name):
      continue
    config = _flat(_config_of(fashion_results.train_command(name, 0, 10, "w")))
    changed = {field for field in config if config[field] != default[field]}
    assert changed == {field for field, _ in variant.overrides}, name
    vae.validate_config(_config_of(fashion_results.train_command(name, 0, 10, "w")))
    checked += 1
  assert checked >= 6  # N(0, I), GMM F/L, TRIP F/L, prior lr x10 exist today


def test_a_variant_with_a_field_the_config_lacks_is_not_available(monkeypatch):
  monkeypatch.setitem(fashion_results.VARIANTS, "bogus",
                      fashion_results.Variant("b", (("prior.no_such_field", 1),)))
  monkeypatch.setitem(fashion_results.VARIANTS, "bogus_kind",
                      fashion_results.Variant("b", (("prior.kind", "no_such_kind"),)))
  assert not fashion_results.variant_available("bogus")
  assert not fashion_results.variant_available("bogus_kind")
  assert fashion_results.variant_available("trip_L_prior_lr_10")


def _run(variant, seed, elbo, fd=None):
  run = {"variant": variant, "fields": dict(fashion_results.VARIANTS[variant].overrides),
         "seed": seed, "workdir": "/w", "step": 30, "test_elbo": elbo,
         "test_iwae_100": elbo + 4.0, "curve": [(10, elbo - 5.0), (30, elbo)],
         "commits": [{"commit": "abc", "dirty": False, "after_step": 0}]}
  if fd is not None:
    run["classifier_fd"] = fd
  return run


def test_table_lists_every_row_with_its_seeds_and_marks_rows_not_run(tmp_path):
  runs = [_run("trip_L", 0, -100.0, 10.0), _run("trip_L", 1, -102.0, 14.0),
          _run("normal", 0, -104.5, 20.0)]
  results_dir = str(tmp_path)
  markdown = fashion_results.write_results_files(runs, 30, "cmd", results_dir,
                                                 unavailable=("trip_L_flows",))
  lines = markdown.splitlines()
  assert lines[2].startswith("| prior | seeds | test ELBO | test IWAE-100 |")
  assert "| TRIP L | 2 | -101.00 ± 1.41 | -97.00 ± 1.41 | 12.00 ± 2.83 |" in lines
  assert "| N(0, I) | 1 | -104.50 | -100.50 | 20.00 |" in lines
  assert "| TRIP F | 0 | not run yet | not run yet | not run yet |" in lines
  flows = fashion_results.VARIANTS["trip_L_flows"].label
  assert f"| {flows} | 0 | not implemented | not implemented | not implemented |" in lines
  assert len(lines) == 4 + len(fashion_results.ROWS)
  results = results_files.read(os.path.join(results_dir, "fashion_mnist.json"))
  assert fashion_results.render(results) == markdown == results["markdown"]
  with open(os.path.join(results_dir, "fashion_mnist.md")) as file:
    assert file.read() == markdown
  assert results["runs"][0]["commits"][0]["commit"] == "abc"
  assert "workdir" not in results["runs"][0]


def test_collect_reads_finished_runs_only(tmp_path):
  root = str(tmp_path)
  for variant, step in (("normal", 30), ("gmm_L", 20)):
    workdir = fashion_results.run_workdir(root, variant, 0, 30)
    os.makedirs(workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as file:
      file.write(json.dumps({"step": step, "epoch": 1, "split": "eval",
                             "test_elbo": -99.0, "test_iwae_100": -95.0}) + "\n")
  runs = fashion_results.collect([("normal", 0), ("gmm_L", 0), ("trip_L", 0)],
                                 root=root, steps=30)
  assert [(run["variant"], run["test_iwae_100"]) for run in runs] == [("normal", -95.0)]
  assert runs[0]["fields"] == {"prior.kind": "normal"} and runs[0]["commits"] == []


def test_jobs_are_seed_major_in_priority_order():
  assert set(fashion_results.PRIORITY) == set(fashion_results.ROWS)
  assert fashion_results.make_jobs(["gmm_F", "trip_L", "normal"], [0, 1]) == [
      ("normal", 0), ("trip_L", 0), ("gmm_F", 0), ("normal", 1), ("trip_L", 1),
      ("gmm_F", 1)]


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(size).to_bytes(4, "big") for size in array.shape)
  with gzip.open(path, "wb") as file:
    file.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("fashion")
  rng = np.random.default_rng(1)
  for split, count in (("train", 40), ("test", 16)):
    images_file, labels_file = data_lib.FASHION_MNIST_FILES[split]
    _write_idx(directory / f"{images_file}.gz",
               rng.integers(0, 256, (count, 28, 28)).astype(np.uint8))
    _write_idx(directory / f"{labels_file}.gz", rng.integers(0, 10, count))
  return str(directory)


def test_fashion_vae_config_trains_and_evaluates_on_idx_files(fashion_dir, tmp_path):
  config = cli.load_config("configs/fashion_vae_trip.py")
  assert config.data.name == "fashion_mnist" and config.model.latent_dim == 32
  config.data.data_dir = fashion_dir
  # N(0, I): the data path and the config are under test here; TRIP at latent 32 on
  # Fashion-MNIST is what the sweep runs (its compilation alone takes minutes on 2 cores).
  config.prior.kind = "normal"
  config.train.batch_size = 8
  config.train.num_steps = 2
  config.train.progress_bar = False
  config.prior.refit_num_examples = 16
  config.eval.batch_size = 8
  config.eval.iwae_samples = 2
  config.eval.num_prior_samples = 4
  config.eval.num_reconstructions = 4
  config.data.num_eval_examples = 8
  vae.train_and_evaluate(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as file:
    final = [json.loads(line) for line in file][-1]
  assert final["step"] == 2 and np.isfinite(final["test_iwae_2"])
  assert final["test_elbo"] < 0


def test_fashion_classifier_config_is_valid():
  config = cli.load_config("configs/fashion_mnist_classifier.py")
  classifier.validate_config(config)
  assert config.data.name == "fashion_mnist" and config.model.kind == "digits"


def test_the_recorded_command_names_only_what_changes_the_table():
  defaults = dict(seeds=[0, 1, 2], steps=fashion_results.DEFAULT_STEPS,
                  eval_every=fashion_results.DEFAULT_EVAL_EVERY)
  assert fashion_results.regenerate_command(argparse.Namespace(**defaults)) == (
      "nice -n 10 python -m benchmarks.fashion_results --parallel 2")
  changed = argparse.Namespace(**dict(defaults, seeds=[3], steps=10))
  assert fashion_results.regenerate_command(changed).endswith("--seeds 3 --steps 10")


def test_selection_table_renders_the_validation_curves_from_its_results(tmp_path):
  from benchmarks import vae_results
  runs = []
  for latent, offset in ((32, -2.0), (16, 0.0)):
    workdir = fashion_results.selection_workdir(str(tmp_path), latent)
    os.makedirs(workdir)
    with open(os.path.join(workdir, vae_results.METRICS_FILENAME), "w") as file:
      for step in (250, 500):
        file.write(json.dumps({"step": step, "epoch": 1, "split": "eval",
                               "validation_elbo": -150.0 + step / 50 + offset,
                               "validation_kl": 20.0 + latent / 8}) + "\n")
      file.write(json.dumps({"step": 500, "epoch": 1, "split": "train",
                             "elbo": 0.0}) + "\n")
    runs.append({"latent_dim": latent,
                 "curve": fashion_results.selection_curve(workdir)})
  assert runs[0]["curve"][-1] == {"step": 500, "validation_elbo": -142.0,
                                  "validation_kl": 24.0}
  table = fashion_results.render({"table": "selection", "runs": runs})
  assert "| latent | 250 | 500 | KL at step 500 |" in table
  lines = table.splitlines()
  assert lines[-2:] == ["| 16 | -145.00 | -140.00 | 22.00 |",
                        "| 32 | -147.00 | -142.00 | 24.00 |"]  # latent order
  command = fashion_results.selection_command(16, "w")
  assert "--config.eval.split=validation" in command
  assert "--config.model.latent_dim=16" in command
