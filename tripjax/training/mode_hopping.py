"""Mode hopping pictures of a trained run (paper, section 6.3, Figure 5), VAE or GAN.

Start from z ~ p(z) and, at every hop, re-draw `num_resampled` random latent
dimensions from their exact conditional given the rest (`tripjax.priors.mode_hopping`);
decoding every latent of a trajectory shows which image features a few latent
dimensions control. One PNG holds all trajectories, one per row, the initial sample
first:

  python -m train.gan --workdir runs/gan --mode_hopping [--num_hops 10]
  python -m train.vae --workdir runs/digits_vae_trip --mode_hopping

In Python (e.g. a notebook): `save_mode_hopping(workdir)`, or
`trajectory_images(trainers.load_latent_model(workdir), key)` for the images.
"""
from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from tripjax import priors
from tripjax.training import cli
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import rng as rng_lib
from tripjax.training import samplers
from tripjax.training import trainers

DEFAULT_NUM_TRAJECTORIES = 8
DEFAULT_NUM_HOPS = 10
DEFAULT_NUM_RESAMPLED = 5  # as in the paper


_jitted_mode_hopping = jax.jit(priors.mode_hopping, static_argnums=(0, 3, 4, 5))


def trajectory_images(latent_model: samplers.LatentModel, key: jax.Array, *,
                      num_trajectories: int = DEFAULT_NUM_TRAJECTORIES,
                      num_hops: int = DEFAULT_NUM_HOPS,
                      num_resampled: int = DEFAULT_NUM_RESAMPLED) -> np.ndarray:
  """Decoded mode-hopping trajectories.

  Args:
    latent_model: the run's prior and decoder (`trainers.load_latent_model`).
    key: PRNG key.
    num_trajectories: T, trajectories (rows).
    num_hops: H, hops after the initial prior sample.
    num_resampled: latent dimensions re-drawn per hop (1 <= it <= latent size).

  Returns:
    (T, H + 1, height, width, C) float32 images in [0, 1]; [:, 0] decodes the initial
    prior samples.
  """
  latents = _jitted_mode_hopping(latent_model.prior, latent_model.prior_params, key,
                                 num_trajectories, num_hops, num_resampled)
  images = latent_model.decode_fn(latents.reshape(-1, latents.shape[-1]))
  return np.asarray(images, np.float32).reshape(
      (num_trajectories, num_hops + 1) + tuple(latent_model.image_shape))


def trajectory_grid(images: np.ndarray) -> np.ndarray:
  """`trajectory_images` output (T, H + 1, h, w, C) -> one uint8 grid, a row per
  trajectory (`image_grid.make_grid` layout)."""
  num_trajectories, num_columns = images.shape[:2]
  return image_grid.make_grid(images.reshape((-1,) + images.shape[2:]),
                              num_columns=num_columns)


def default_path(workdir: str, step: int) -> str:
  """workdir/images/mode_hopping_step_<step>.png."""
  return os.path.join(workdir, loop.IMAGES_DIRNAME, f"mode_hopping_step_{step:07d}.png")


def save_mode_hopping(workdir: str, *, step: int | None = None, config=None,
                      num_trajectories: int = DEFAULT_NUM_TRAJECTORIES,
                      num_hops: int = DEFAULT_NUM_HOPS,
                      num_resampled: int = DEFAULT_NUM_RESAMPLED, seed: int = 0,
                      path: str | None = None) -> str:
  """Writes the mode-hopping PNG of a run's checkpoint and returns its path.

  Args:
    workdir: a `train.vae` or `train.gan` workdir.
    step: the checkpoint (default: the newest).
    config: the run's config (default: its saved config.json).
    num_trajectories, num_hops, num_resampled: see `trajectory_images`.
    seed: seeds the initial samples and the hops (its "mode_hopping" random
      stream, `tripjax.training.rng`).
    path: the PNG (default `default_path(workdir, step)`).
  """
  latent_model = trainers.load_latent_model(workdir, step, config=config)
  return _save(latent_model, path or default_path(workdir, latent_model.position.step),
               num_trajectories=num_trajectories, num_hops=num_hops,
               num_resampled=num_resampled, seed=seed)


def _save(latent_model: samplers.LatentModel, path: str, *, num_trajectories: int,
          num_hops: int, num_resampled: int, seed: int) -> str:
  images = trajectory_images(latent_model,
                             rng_lib.RandomStreams(seed).key("mode_hopping"),
                             num_trajectories=num_trajectories, num_hops=num_hops,
                             num_resampled=num_resampled)
  return image_grid.save_grid_png(
      trajectory_grid(images), path,
      scale=image_grid.display_scale(latent_model.image_shape))


def _count(minimum: int):
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      value = None
    if value is None or value < minimum:
      raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
    return value
  return parse


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
  """--mode_hopping and its settings (a trainer's CLI adds --step itself)."""
  group = parser.add_argument_group("mode hopping (paper Figure 5)")
  group.add_argument("--mode_hopping", action="store_true", help="Only write the "
                     "mode-hopping PNG of a checkpoint (default: the newest; the "
                     "workdir's config unless --config is given), then exit.")
  group.add_argument("--num_trajectories", type=_count(1),
                     default=DEFAULT_NUM_TRAJECTORIES, help="Rows of the PNG.")
  group.add_argument("--num_hops", type=_count(0), default=DEFAULT_NUM_HOPS,
                     help="Hops after the initial sample (columns - 1).")
  group.add_argument("--num_resampled", type=_count(1), default=DEFAULT_NUM_RESAMPLED,
                     help="Latent dimensions re-drawn at every hop.")
  group.add_argument("--hop_seed", type=_count(0), default=0,
                     help="Seed of the initial samples and the hops.")
  group.add_argument("--out", help="The PNG to write (default: "
                     "WORKDIR/images/mode_hopping_step_<step>.png).")


def run_from_flags(args: argparse.Namespace, config=None) -> str:
  """`save_mode_hopping` with the flags of `add_cli_flags` (and --workdir, --step).

  Raises:
    cli.UsageError: --num_resampled exceeds the run's latent size.
  """
  latent_model = trainers.load_latent_model(args.workdir, args.step, config=config)
  latent_dim = latent_model.prior.num_variables
  if args.num_resampled > latent_dim:
    raise cli.UsageError(f"--num_resampled {args.num_resampled}: the run has only "
                         f"{latent_dim} latent dimensions.")
  return _save(latent_model,
               args.out or default_path(args.workdir, latent_model.position.step),
               num_trajectories=args.num_trajectories, num_hops=args.num_hops,
               num_resampled=args.num_resampled, seed=args.hop_seed)
