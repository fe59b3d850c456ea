"""The GAN mode tests (issue 20, section 1): MLPs, point data in the GAN trainer,
configs/ring8_wgangp.py and grid25, and `python -m benchmarks.gan_modes --smoke`."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from tripjax import data as data_lib
from tripjax.configs import grid25_wgangp
from tripjax.configs import ring8_wgangp
from tripjax.metrics import modes
from tripjax.models import gan as gan_models
from tripjax.training import gan
from tripjax.training import metric_writer
from tripjax.training import rng as rng_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _num_params(tree):
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def test_mlps_have_pacgans_sizes_and_shapes():
  generator, critic = gan_models.mlp_generator_critic(2)
  z = jnp.zeros((3, 16))
  generator_params = generator.init(jax.random.key(0), z)
  critic_params = critic.init(jax.random.key(1), jnp.zeros((3, 2)))
  assert generator.apply(generator_params, z).shape == (3, 2)
  assert critic.apply(critic_params, jnp.zeros((3, 2))).shape == (3,)
  # 16 -> 400 -> 400 -> 400 -> 400 -> 2 and 2 -> 200 -> 200 -> 200 -> 1, with biases.
  assert _num_params(generator_params) == (16 * 400 + 400) + 3 * (400 * 400 + 400) + 802
  assert _num_params(critic_params) == (2 * 200 + 200) + 2 * (200 * 200 + 200) + 201
  # The generator's output is linear (points are unbounded), the critic's score too.
  big = generator.apply(jax.tree.map(lambda p: 100 * p, generator_params),
                        jax.random.normal(jax.random.key(2), (64, 16)))
  assert float(jnp.max(jnp.abs(big))) > 1.5
  layer_critic = gan_models.MLPCritic(widths=(8, 8), norm="layer")
  params = layer_critic.init(jax.random.key(3), jnp.zeros((1, 2)))
  assert "norm1" in params["params"] and "norm0" not in params["params"]
  with pytest.raises(ValueError, match="critic norm"):
    gan_models.mlp_generator_critic(2, critic_norm="group")


@pytest.mark.parametrize("module", [ring8_wgangp, grid25_wgangp])
def test_point_configs_validate_and_build_mlps(module):
  config = module.get_config()
  gan.validate_config(config)
  assert (config.model.latent_dim, config.train.batch_size, config.gan.n_critic,
          config.train.learning_rate) == (2, 256, 5, 1e-4)
  model = gan.build_model(config, data_lib.image_shape(config.data.name))
  assert model.points and model.image_shape == (2,)
  assert isinstance(model.generator, gan_models.MLPGenerator)
  assert tuple(model.generator.widths) == gan_models.PACGAN_GENERATOR_WIDTHS
  assert tuple(model.critic.widths) == gan_models.PACGAN_CRITIC_WIDTHS
  assert model.critic.norm == "none"
  points = jnp.array([[3.0, -4.0]])
  np.testing.assert_array_equal(model.to_model_range(points), points)  # no [0, 1] map
  image_model = gan.build_model(_digits_config(), (28, 28, 1))
  np.testing.assert_array_equal(image_model.to_model_range(jnp.ones((1, 28, 28, 1))),
                                jnp.ones((1, 28, 28, 1)))  # 2 * 1 - 1


def _digits_config():
  from tripjax.configs import digits_wgangp_trip
  return digits_wgangp_trip.get_config()


def tiny_point_config():
  """ring8 with tiny MLPs, 2,000 points, batch 32, n_critic 2, a learned full GMM."""
  config = ring8_wgangp.get_config()
  config.data.num_train_examples = 2000
  config.model.widths = (16, 16)
  config.model.critic_widths = (16, 8)
  config.prior.kind = "full_gmm"
  config.prior.num_components = 3
  config.gan.n_critic = 2
  config.train.batch_size = 32
  config.train.num_steps = 4
  config.train.log_every_steps = 2
  config.train.checkpoint_every_steps = 4
  config.train.progress_bar = False
  config.eval.every_steps = 2
  return config


def test_point_run_writes_scatter_pngs_and_the_mode_metrics_of_its_samples(tmp_path):
  config = tiny_point_config()
  workdir = str(tmp_path / "ring8")
  gan.train_and_evaluate(config, workdir)
  records = metric_writer.MetricWriter(workdir).read()
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [2, 4]
  trains = [r for r in records if r["split"] == "train"]
  assert all(r["prior_grad_norm"] > 0 for r in trains)  # the full GMM is learned
  for step in (2, 4):
    png = Image.open(os.path.join(workdir, "images", f"step_{step:07d}_samples.png"))
    assert png.mode == "RGB" and png.size == (320, 320)
  # The logged metrics are those of MODE_NUM_SAMPLES samples of the final generator
  # from the "image_grid" key.
  model, params, position = gan.restore(config, workdir)
  assert position.step == 4
  points = np.asarray(gan.sample_images(
      model, params, rng_lib.RandomStreams(config.train.seed).key("image_grid"),
      gan.MODE_NUM_SAMPLES))
  assert points.shape == (gan.MODE_NUM_SAMPLES, 2)
  expected = modes.mode_metrics(points, *data_lib.point_mixture("ring8"))
  assert evals[-1]["modes_covered"] == expected.modes_covered
  np.testing.assert_allclose(evals[-1]["high_quality_share"], expected.high_quality_share)
  np.testing.assert_allclose(float(evals[-1]["reverse_kl"]), expected.reverse_kl)


def test_gan_modes_smoke_trains_resumes_and_writes_results(tmp_path):
  workdir = str(tmp_path / "smoke")
  environment = dict(os.environ, JAX_PLATFORMS="cpu",
                     XLA_FLAGS="--xla_backend_optimization_level=0")
  command = [sys.executable, "-m", "benchmarks.gan_modes", "--smoke",
             f"--workdir={workdir}"]
  first = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True,
                         text=True, timeout=600)
  assert first.returncode == 0, first.stdout + first.stderr
  assert first.stdout.count("done  ring8") == 2
  with open(os.path.join(workdir, "results", "gan_modes.json")) as file:
    results = json.load(file)
  assert [run["prior"] for run in results["runs"]] == ["normal", "trip_L"]
  assert all(run["steps"] == 4 and run["latent_dim"] == 2 for run in results["runs"])
  from benchmarks import gan_modes
  with open(os.path.join(workdir, "results", "gan_modes.md")) as file:
    assert file.read() == gan_modes.render(results) == results["markdown"]
  assert "| N(0, I) | 2 | 1 |" in results["markdown"]
  assert os.path.getsize(os.path.join(workdir, "gan_modes.png")) > 0
  # Running again trains nothing (finished runs are skipped) and writes the same table.
  second = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=600)
  assert second.returncode == 0 and "start" not in second.stdout
  with open(os.path.join(workdir, "results", "gan_modes.md")) as file:
    assert file.read() == results["markdown"]


def test_study_settings_reach_every_run_its_record_and_the_caption():
  from benchmarks import gan_modes
  from tripjax.training import cli
  from tripjax.training import config_checks
  settings = gan_modes.parse_settings(["train.learning_rate=3e-4",
                                       "model.widths=(128,128)", "model.critic_norm=none"])
  assert settings == (("train.learning_rate", "3e-4"), ("model.widths", "(128,128)"),
                      ("model.critic_norm", "none"))
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    gan_modes.parse_settings(["train.learning_rate"])
  # Checked up front, as the CLIs check a --config. override: field and value named.
  with pytest.raises(config_checks.ConfigError, match="train.learning_rat"):
    gan_modes.parse_settings(["train.learning_rat=3e-4"])
  with pytest.raises(config_checks.ConfigError, match="model.widths"):
    gan_modes.parse_settings(["model.widths=wide"])
  command = gan_modes.train_command("ring8", "trip_L", 2, 0, 100, "w", settings)
  assert "--config.train.learning_rate=3e-4" in command
  assert "--config.model.widths=(128,128)" in command
  config = ring8_wgangp.get_config()
  for field, text in settings:
    cli.apply_override(config, field, text)
  assert (config.train.learning_rate, config.model.widths) == (3e-4, (128, 128))
  run = {"dataset": "ring8", "prior": "normal", "latent_dim": 2, "seed": 0,
         "modes_covered": 8.0, "high_quality_share": 0.5, "reverse_kl": 0.01}
  table = gan_modes.render({"steps": 100, "runs": [run],
                            "settings": [["train.learning_rate", "3e-4"]]})
  assert "(configs/ring8_wgangp.py, train.learning_rate=3e-4), 100 generator steps" \
      in table
