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


def scatter_points(points: np.ndarray, centres: np.ndarray, sd: float, *,
                   size: int = 320, margin: float = 1.0) -> np.ndarray:
  """A scatter plot of 2-D points over a mixture's modes, as an RGB uint8 image.

  Every mode is a red circle of radius 3 sd (its high-quality region, as
  `tripjax.metrics.modes` counts it, at least 2 pixels) with a cross at its centre;
  every point is a blue dot. The view is the square around the centres widened by
  `margin` data units on every side (y up); points outside it are left out.

  Args:
    points: (n, 2).
    centres: (K, 2).
    sd: the components' standard deviation.
    size: side of the image in pixels.

  Returns:
    (size, size, 3) uint8.
  """
  from PIL import ImageDraw
  points = np.asarray(points, np.float64)
  centres = np.asarray(centres, np.float64)
  half = float(np.max(np.abs(centres))) + margin
  pixels_per_unit = (size - 1) / (2 * half)

  def to_pixels(xy):
    return (xy[..., 0] + half) * pixels_per_unit, (half - xy[..., 1]) * pixels_per_unit

  image = Image.new("RGB", (size, size), (255, 255, 255))
  draw = ImageDraw.Draw(image)
  radius = max(2.0, 3 * sd * pixels_per_unit)
  for x, y in zip(*to_pixels(centres)):
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(220, 40, 40))
    draw.line([x - 3, y, x + 3, y], fill=(220, 40, 40))
    draw.line([x, y - 3, x, y + 3], fill=(220, 40, 40))
  array = np.array(image)
  xs, ys = to_pixels(points)
  inside = (xs >= 0) & (xs <= size - 1) & (ys >= 0) & (ys <= size - 1)
  array[np.rint(ys[inside]).astype(int), np.rint(xs[inside]).astype(int)] = (30, 60, 200)
  return array
