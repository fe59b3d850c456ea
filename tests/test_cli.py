"""The command lines' shared plumbing (tripjax/training/cli.py): configs by path or name,
typed overrides, one-line errors with exit code 2 and nothing written."""
import os

import pytest

from tripjax.configs import digits_vae_trip
from tripjax.training import cli
from tripjax.training import config_checks
from tripjax.training import workdirs
from train import fid
from train import train_classifier
from train import vae as train_vae

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(REPO_ROOT, "configs", "digits_vae_trip.py")


def _parse(*arguments, **kwargs):
  parser = cli.make_parser("test", "", config_help="")
  return cli.parse(parser, ["--workdir=w", *arguments], **kwargs)[1]


def test_config_by_path_and_by_name_are_the_same():
  assert _parse(f"--config={CONFIG_PATH}").to_dict() == _parse(
      "--config", "digits_vae_trip").to_dict() == digits_vae_trip.get_config().to_dict()
  assert "digits_vae_trip" in cli.stock_config_names()
  assert not any(name.startswith("base") for name in cli.stock_config_names())


@pytest.mark.parametrize("override,field,expected", [
    ("prior.kind=gmm", "prior.kind", "gmm"),
    ("prior.learnable=False", "prior.learnable", False),
    ("train.learning_rate=1e-2", "train.learning_rate", 1e-2),
    ("train.learning_rate=1", "train.learning_rate", 1.0),
    ("train.max_steps=5", "train.max_steps", 5),
    ("train.max_steps=None", "train.max_steps", None),
    ("model.widths=(4,8)", "model.widths", (4, 8)),
    ("prior.refit_at_steps=(10,20)", "prior.refit_at_steps", (10, 20)),
    ("data.data_dir=/tmp/data", "data.data_dir", "/tmp/data"),
])
def test_overrides_are_typed_like_their_field(override, field, expected):
  config = _parse("--config=digits_vae_trip", f"--config.{override}")
  value = config_checks.get_field(config, field)
  assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("arguments,message", [
    (["--config=nope.py"], "no such config file, and no stock config of that name; "
     "stock configs: "),
    (["--config=digits_vae_trip", "--config.prior=bogus"],
     "config field prior = 'bogus': is a group of fields"),
    (["--config=digits_vae_trip", "--config.prior_rank=3"],
     "no such config field. Did you mean prior.rank"),
    (["--config=digits_vae_trip", "--config.prior.num_compnents=3"],
     "Did you mean prior.num_components"),
    (["--config=digits_vae_trip", "--config.model.latent_dim=0"],
     "config field model.latent_dim = 0: must be a positive integer."),
    (["--config=digits_vae_trip", "--config.train.batch_size=0"],
     "config field train.batch_size = 0: must be a positive integer."),
    (["--config=digits_vae_trip", "--config.prior.kind=bogus"],
     "config field prior.kind = 'bogus': must be one of 'normal', 'gmm', 'trip', "
     "'full_gmm', 'full_gaussian'."),
    (["--config=digits_vae_trip", "--config.train.learning_rate=fast"],
     "config field train.learning_rate = 'fast': must be a float."),
    (["--config=digits_vae_trip", "--config.prior.learnable=maybe"],
     "must be True or False."),
    (["--config=digits_vae_trip", "--config.eval.split=dev"],
     "must be one of 'train', 'validation', 'test'."),
    (["--config=digits_vae_trip", "--config.train.max_steps"],
     "write overrides as --config.<field>=<value>"),
    ([], "--config is required for training"),
])
def test_bad_vae_commands_fail_in_one_line_and_write_nothing(tmp_path, capsys,
                                                             arguments, message):
  workdir = tmp_path / "run"
  assert train_vae.main([f"--workdir={workdir}", *arguments]) == 2
  error = capsys.readouterr().err
  assert message in error and len(error.strip().splitlines()) == 1, error
  assert not workdir.exists()


def test_other_commands_report_config_errors_the_same_way(tmp_path, capsys):
  assert fid.main([f"--workdir={tmp_path}", "--config.metric=kid"]) == 2
  assert "config field metric = 'kid': must be one of 'fid', 'classifier_fd'." in (
      capsys.readouterr().err)
  assert train_classifier.main([f"--workdir={tmp_path / 'c'}",
                                "--config.train.binarize_fraction=2"]) == 2
  assert "train.binarize_fraction = 2.0: must be a number >= 0.0 and <= 1.0." in (
      capsys.readouterr().err)
  assert not (tmp_path / "c").exists()


def test_a_rerun_with_another_config_is_refused_before_anything_is_written(
    tmp_path, capsys):
  workdir = tmp_path / "run"
  saved = digits_vae_trip.get_config()
  workdirs.save_config(saved, str(workdir))
  before = (workdir / "config.json").read_bytes()
  assert train_vae.main([f"--workdir={workdir}", f"--config={CONFIG_PATH}",
                         "--config.model.latent_dim=8",
                         "--config.prior.kind=gmm"]) == 2
  error = capsys.readouterr().err
  assert len(error.strip().splitlines()) == 1
  assert "model.latent_dim: 16 in the run, 8 now" in error
  assert "prior.kind: 'trip' in the run, 'gmm' now" in error
  assert "--allow_config_change" in error and "new --workdir" in error
  assert (workdir / "config.json").read_bytes() == before
  assert sorted(os.listdir(workdir)) == ["config.json"]


def test_schedule_and_bookkeeping_fields_may_change_on_a_rerun(tmp_path):
  saved = digits_vae_trip.get_config()
  workdirs.save_config(saved, str(tmp_path))
  new = digits_vae_trip.get_config()
  new.train.num_epochs = 40
  new.train.max_steps = 10
  new.train.progress_bar = False
  new.train.cpu_devices = 1
  new.eval.iwae_samples = 1000
  workdirs.check_rerun(new, str(tmp_path))  # No error.
  new.train.learning_rate = 1.0
  with pytest.raises(workdirs.ConfigMismatchError, match="train.learning_rate"):
    workdirs.check_rerun(new, str(tmp_path))
  workdirs.check_rerun(new, str(tmp_path), allow_config_change=True)


_DEVICE_COUNT_SCRIPT = """
import sys, jax
from tripjax.training import sharding
maximum = None if sys.argv[2] == "None" else int(sys.argv[2])
sharding.use_all_cpu_cores([int(sys.argv[1])], max_devices=maximum)
print(jax.device_count())
"""


def _device_count(batch: int, max_devices: str, xla_flags: str | None = None) -> int:
  """jax.device_count() in a fresh process after `use_all_cpu_cores`."""
  import subprocess
  import sys
  environment = {name: value for name, value in os.environ.items()
                 if name not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  environment["JAX_PLATFORMS"] = "cpu"
  if xla_flags:
    environment["XLA_FLAGS"] = xla_flags
  result = subprocess.run(
      [sys.executable, "-c", _DEVICE_COUNT_SCRIPT, str(batch), max_devices],
      env=environment, capture_output=True, text=True, timeout=120, check=True)
  return int(result.stdout.split()[-1])


@pytest.mark.parametrize("batch, max_devices, expected", [
    (64, "None", "cores"), (64, "1", 1), (3, "None", 1)])
def test_cpu_devices_are_the_cores_at_most_max_devices_dividing_the_batch(
    batch, max_devices, expected):
  """`use_all_cpu_cores` (what `train.cpu_devices` sets): one device per usable core,
  at most `max_devices`, lowered to divide the batch."""
  cores = len(os.sched_getaffinity(0))
  if expected == "cores":
    expected = max(n for n in range(1, cores + 1) if batch % n == 0)
  assert _device_count(batch, max_devices) == expected


def test_an_explicit_xla_device_count_wins_over_cpu_devices():
  assert _device_count(64, "1", "--xla_force_host_platform_device_count=3") == 3
