"""Tests for benchmarks/cvae_ablation.py: the variants' commands and the table (no
training)."""
import json
import os

import pytest

from benchmarks import cvae_ablation
from benchmarks import cvae_results
from tripjax.configs import digits_classifier
from tripjax.training import cli
from tripjax.training import cvae


def _config_of(command):
  """The config `python -m train.cvae` builds from a command (its own parser)."""
  _, overrides = cli.split_overrides(command[3:])
  config = cli.load_config(cvae_results.CONFIG_PATH)
  for field, raw in overrides:
    cli.apply_override(config, field, raw)
  return config


@pytest.mark.parametrize("variant", cvae_ablation.VARIANTS,
                         ids=lambda variant: variant.slug)
def test_every_variant_is_a_valid_validation_run_that_pins_its_fields(variant):
  command = cvae_results.train_command("trip", 0.5, 1, variant.epochs, "w", "c",
                                       variant.extra())
  config = _config_of(command)
  cvae.validate_config(config)
  assert config.eval.split == "validation" and config.train.num_epochs == variant.epochs
  weight = dict(field.split("=") for field in variant.overrides).get(
      "train.attribute_weight", "1.0")
  assert config.train.attribute_weight == float(weight)  # pinned, whatever the default
  for field in variant.overrides:
    name, value = field.split("=")
    section, key = name.split(".")
    assert str(config[section][key]) == value or config[section][key] == float(value)


def test_jobs_are_unique_and_seed_major():
  jobs = cvae_ablation.jobs()
  assert len(jobs) == len(set(jobs)) == sum(len(v.runs) for v in cvae_ablation.VARIANTS)
  assert [seed for _, _, seed in jobs] == sorted(seed for _, _, seed in jobs)


def test_collect_and_render(tmp_path):
  root = str(tmp_path)
  numbers = {("epochs_40", 0.0, 0): 0.10, ("epochs_40", 0.0, 1): 0.14,
             ("epochs_40_weight_16", 0.5, 0): 0.07}
  for (slug, hidden, seed), rate in numbers.items():
    workdir = cvae_ablation.run_workdir(root, (slug, hidden, seed))
    os.makedirs(workdir)
    record = {"step": 2480, "epoch": 40, "split": "eval",
              "violation_single_mean": rate, "violation_single_digit": 2 * rate,
              "violation_subset_mean": rate + 0.01, "diversity_single_tv": 0.08,
              "validation_bound_x_given_y": -88.0 - seed, "test_bound_x_given_y": 0.0}
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as file:
      file.write(json.dumps(record) + "\n")
  runs = cvae_ablation.collect(cvae_ablation.jobs(), root=root)
  assert len(runs) == 3  # the others are not finished
  assert all("test_bound_x_given_y" not in run for run in runs)  # validation only
  assert runs[0]["fields"]["train.attribute_weight"] == "1.0"
  table = cvae_ablation.render({"runs": runs})
  assert "| epochs | 40 | 0% | 40 | 0, 1 | 12.0 ± 2.8 | 24.0 ± 5.7 | 13.0 ± 2.8 | " \
         "0.08 ± 0.00 | -88.50 ± 0.71 |" in table
  assert "| 40 epochs, attribute weight w | 16 | 50% | 40 | 0 | 7.0 | 14.0 | 8.0 |" \
         in table
  assert table.count("\n| ") == 3  # the header and two rows


def test_the_ablation_and_diagnosis_refuse_to_write_an_empty_table(tmp_path, capsys):
  from benchmarks import cvae_diagnosis
  results_dir = tmp_path / "results"
  classifier = tmp_path / "classifier"
  classifier.mkdir()
  with pytest.raises(SystemExit):  # no classifier there
    cvae_diagnosis.main(["--workdir", str(tmp_path), "--classifier-workdir",
                         str(classifier), "--results-dir", str(results_dir)])
  assert "no digit classifier" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cvae_ablation.main(["--workdir", str(tmp_path), "--no-train", "--classifier-workdir",
                        str(classifier), "--results-dir", str(results_dir)])
  assert "no digit classifier" in capsys.readouterr().err
  metadata = {"config": json.loads(json.dumps(digits_classifier.get_config().to_dict())),
              "test_accuracy": 0.9}
  (classifier / "classifier.json").write_text(json.dumps(metadata))
  (classifier / "classifier.msgpack").write_text("")
  for main in (cvae_ablation.main, cvae_diagnosis.main):
    args = ["--workdir", str(tmp_path), "--classifier-workdir", str(classifier),
            "--results-dir", str(results_dir)]
    with pytest.raises(SystemExit):
      main(args + (["--no-train"] if main is cvae_ablation.main else []))
    assert "nothing written" in capsys.readouterr().err
  assert not results_dir.exists()
