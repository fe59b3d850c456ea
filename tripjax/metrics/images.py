"""Input checks shared by the image feature extractors (Inception FID, classifier FD)."""

from typing import Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np


def as_unit_images(images,
                   channels: Sequence[int] = (1, 3),
                   spatial_shape: Optional[Tuple[int, int]] = None,
                   name: str = "images") -> np.ndarray:
  """Validates an image batch and returns it as float32 in [0, 1].

  Args:
    images: array (N, H, W, C), channels last. Either uint8 in 0..255 or a float
      array with values in [0, 1] (e.g. decoder means after a sigmoid).
    channels: allowed values of C.
    spatial_shape: required (H, W), or None for any size.
    name: what to call the argument in error messages.

  Returns:
    float32 NumPy array (N, H, W, C) with values in [0, 1].

  Raises:
    ValueError: wrong rank, channel count, spatial size, empty batch, NaN/inf,
      or values outside [0, 1] (e.g. images scaled to [-1, 1] or 0..255 floats).
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(
        f"{name} must have shape (N, H, W, C) (channels last), got {images.shape}")
  if images.shape[0] == 0:
    raise ValueError(f"{name} is an empty batch")
  if images.shape[-1] not in channels:
    hint = ""
    if images.shape[1] in channels:
      hint = " (looks channels-first; transpose to (N, H, W, C))"
    raise ValueError(
        f"{name} must have C in {tuple(channels)} channels last, got shape "
        f"{images.shape}{hint}")
  if spatial_shape is not None and tuple(images.shape[1:3]) != tuple(spatial_shape):
    raise ValueError(
        f"{name} must be {spatial_shape[0]}x{spatial_shape[1]}, got "
        f"{images.shape[1]}x{images.shape[2]}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if not (np.issubdtype(images.dtype, np.floating)
          or np.issubdtype(images.dtype, np.integer)
          or images.dtype == np.bool_):
    raise ValueError(f"{name} must be uint8 or float, got dtype {images.dtype}")
  images = images.astype(np.float32)
  if not np.all(np.isfinite(images)):
    raise ValueError(f"{name} contain NaN or inf")
  low, high = float(images.min()), float(images.max())
  if low < 0.0 or high > 1.0:
    raise ValueError(
        f"{name} must lie in [0, 1] (or be uint8), got values in [{low:.4g}, {high:.4g}]; "
        "map [-1, 1] outputs with (x + 1) / 2 and 0..255 floats with x / 255")
  return images


def quantize_uint8(images):
  """Round-trips [0, 1] images (any shape) through uint8, as saving a PNG does.

  Uses round-half-up, like `torchvision.utils.save_image`
  (`x * 255 + 0.5`, clamp, truncate), and returns k / 255 as a jax array of
  the input's float dtype. Usable inside jit.
  """
  levels = jnp.clip(jnp.floor(jnp.asarray(images) * 255.0 + 0.5), 0.0, 255.0)
  return levels / 255.0
