"""PNG grids of images (reconstructions, prior samples) with PIL."""
import math
import os

import numpy as np
from PIL import Image


def display_scale(image_shape) -> int:
  """PNG enlargement for small images: 28 and 32 px twice as big, 64 px as they are."""
  return max(1, 64 // image_shape[0])


def make_grid(images: np.ndarray, num_columns: int | None = None,
              padding: int = 2) -> np.ndarray:
  """Tiles images into one uint8 array.

  Args:
    images: (N, H, W, C) in [0, 1], C = 1 or 3.
    num_columns: images per row (default: ceil(sqrt(N))).
    padding: pixels of white between images.

  Returns:
    (rows * (H + padding) + padding, columns * (W + padding) + padding, C) uint8.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  count, height, width, channels = images.shape
  num_columns = num_columns or math.ceil(math.sqrt(count))
  num_rows = math.ceil(count / num_columns)
  grid = np.ones((num_rows * (height + padding) + padding,
                  num_columns * (width + padding) + padding, channels), np.float32)
  for index, image in enumerate(images):
    row, column = divmod(index, num_columns)
    top = padding + row * (height + padding)
    left = padding + column * (width + padding)
    grid[top:top + height, left:left + width] = image
  return np.round(grid * 255).astype(np.uint8)


def save_image_grid(images: np.ndarray, path: str, num_columns: int | None = None,
                    scale: int = 1) -> str:
  """Writes `make_grid(images, num_columns)` as a PNG (atomically) and returns `path`.

  `scale` > 1 enlarges every pixel to scale x scale (for small images such as 28 px).
  """
  return save_grid_png(make_grid(images, num_columns), path, scale)


def save_grid_png(grid: np.ndarray, path: str, scale: int = 1) -> str:
  """Writes a grid from `make_grid` ((H, W, C) uint8) as a PNG, atomically."""
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  temporary_path = path + ".tmp"
  Image.fromarray(grid).save(temporary_path, format="PNG")
  os.replace(temporary_path, path)
  return path
