"""Workdirs saved by an older tripjax still rerun and evaluate with today's configs.

`saved_configs/21024d8/` holds the config.json that every stock config wrote at commit
21024d8 (before the fields of issues 19-24 existed). A rerun of such a workdir with
today's stock config must pass `workdirs.check_rerun` (the new fields get the values
that mean what their absence meant: `workdirs.ADDED_FIELDS`, `RESUMABLE_FIELDS`,
`UNUSED_WHEN_ABSENT`), and a field that really changed must still be refused.
"""
import os
import shutil

import pytest

from tripjax.training import config_files
from tripjax.training import workdirs

SAVED = os.path.join(os.path.dirname(__file__), "saved_configs", "21024d8")
NAMES = sorted(name[:-len(".json")] for name in os.listdir(SAVED))


# Stock defaults changed on purpose since then (a rerun of an old workdir with them
# would train something else, so it is refused): the old values, to rerun as it was.
CHANGED_DEFAULTS = {"digits_cvae_trip": {"train.attribute_weight": 1.0},
                    "digits_wgangp_trip": {"train.learning_rate": 2e-4}}


def _stock_config_as_it_was(name):
  config = config_files.load_config(name)
  for field, value in CHANGED_DEFAULTS.get(name, {}).items():
    section, key = field.split(".")
    config[section][key] = value
  return config


def _old_workdir(tmp_path, name):
  workdir = tmp_path / name
  workdir.mkdir()
  shutil.copy(os.path.join(SAVED, f"{name}.json"), workdirs.config_path(str(workdir)))
  return str(workdir)


def test_every_stock_config_of_that_time_is_saved():
  assert len(NAMES) == 11 and "digits_vae_trip" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_an_old_workdir_reruns_with_todays_stock_config(tmp_path, name):
  workdir = _old_workdir(tmp_path, name)
  config = _stock_config_as_it_was(name)
  workdirs.check_rerun(config, workdir)  # raises ConfigMismatchError on a difference
  assert workdirs.config_differences(workdirs.load_config(workdir), config) == []


@pytest.mark.parametrize("name", sorted(CHANGED_DEFAULTS))
def test_an_old_workdir_refuses_a_changed_stock_default(tmp_path, name):
  workdir = _old_workdir(tmp_path, name)
  for field in CHANGED_DEFAULTS[name]:
    with pytest.raises(workdirs.ConfigMismatchError, match=field):
      workdirs.check_rerun(config_files.load_config(name), workdir)


@pytest.mark.parametrize("name", ["digits_vae_trip", "digits_cvae_trip",
                                  "digits_wgangp_trip"])
def test_an_old_workdir_still_refuses_a_real_change(tmp_path, name):
  workdir = _old_workdir(tmp_path, name)
  config = _stock_config_as_it_was(name)
  config.model.latent_dim = config.model.latent_dim + 1
  with pytest.raises(workdirs.ConfigMismatchError, match="model.latent_dim"):
    workdirs.check_rerun(config, workdir)


def test_the_imputer_of_an_old_cvae_run_is_free_but_a_new_runs_is_not(tmp_path):
  old = _old_workdir(tmp_path, "digits_cvae_trip")
  config = _stock_config_as_it_was("digits_cvae_trip")
  config.imputer.hidden = config.imputer.hidden + 1
  workdirs.check_rerun(config, old)  # the old run never had an imputer
  new = tmp_path / "new"
  workdirs.save_config(config_files.load_config("digits_cvae_trip"), str(new))
  with pytest.raises(workdirs.ConfigMismatchError, match="imputer.hidden"):
    workdirs.check_rerun(config, str(new))
