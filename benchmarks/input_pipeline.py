"""Images/s of the training input for CelebA-shaped JPEGs, next to what the steps consume.

  python -m benchmarks.input_pipeline                  # 2,048 images, workers 0 1 2
  python -m benchmarks.input_pipeline --images 512 --workers 0 1 --repeats 1 --no-steps

CelebA cannot be downloaded here, so the benchmark writes a CelebA-shaped set: a real
TFDS `celeb_a` dataset (the TFDS builder's own features: 218x178x3 JPEG images, 40
attributes, landmarks; ArrayRecord files) in a temporary folder, whose images are
natural-looking rather than noise: composites of the offline digits (`data.load_dataset(
"digits")`), upscaled 2-5x with bilinear filtering, coloured on a smooth two-colour
gradient, Gaussian-blurred and given a little pixel noise, JPEG-encoded by PIL at the
quality (`--quality`) that brings their mean file size near real CelebA's
(img_align_celeba.zip, 1,443,490,838 bytes in TFDS's checksums, over 202,599 images:
about 7.1 KB each). It prints their mean
size and the decode time per image (PIL, as TFDS decodes) and the crop + resize time.

Then it times `tripjax.input_pipeline.read_steps` over `data.load_dataset("celeb_a",
"train", data_dir=...)` as the training loop reads it (batches of 128 in the loop's
shuffled order, the paper's 160 px crop resized to 64x64), for each `--workers`
count: without the cache (decoding every image) and from the preprocessed cache
(`input_pipeline.cached`, read directly as the loop does; the same cache through grain
workers for comparison). Each measurement is one pass over the set after the pipeline
has started (the first batch is excluded and its wait reported as the start-up time),
repeated `--repeats` times; the table gives medians, as the machine is shared.

Last, unless `--no-steps`: the images/s that the paper's VAE step (batch 128,
`benchmarks.vae_step.StepTimer`, N(0, I) prior) and GAN step (batch 64, n_critic = 5:
five critic updates and one generator update, `benchmarks.gan_step.UpdateTimer`)
consume on this machine alone, and the VAE step's images/s when the loop feeds it from
the pipeline (`loop._prefetched_batches`) with each worker count: on a machine with few
cores the workers and XLA's step share them.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

IMAGE_SHAPE = (218, 178, 3)  # CelebA's aligned faces
CELEB_A_MEAN_JPEG_BYTES = 1443490838 / 202599  # img_align_celeba.zip / its images
BATCH = 128


# ------------------------------------------------------------------ the images


def natural_image(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
  """A smooth 218x178x3 uint8 composite: a gradient, 3-6 coloured upscaled digits,
  a Gaussian blur and a little noise. `digits`: (n, 28, 28, 1) uint8."""
  from PIL import Image
  from PIL import ImageFilter

  height, width, _ = IMAGE_SHAPE
  top, bottom = rng.uniform(30, 225, (2, 3))
  ramp = np.linspace(0.0, 1.0, height)[:, None, None]
  canvas = np.broadcast_to(top * (1 - ramp) + bottom * ramp, IMAGE_SHAPE).copy()
  for _ in range(rng.integers(3, 7)):
    digit = digits[rng.integers(len(digits)), ..., 0]
    size = int(rng.integers(56, 141))
    mask = np.asarray(Image.fromarray(digit).resize((size, size),
                                                    Image.Resampling.BILINEAR)) / 255.0
    row = int(rng.integers(-size // 3, height - 2 * size // 3))
    column = int(rng.integers(-size // 3, width - 2 * size // 3))
    rows = slice(max(row, 0), min(row + size, height))
    columns = slice(max(column, 0), min(column + size, width))
    alpha = mask[rows.start - row:rows.stop - row,
                 columns.start - column:columns.stop - column, None]
    colour = rng.uniform(0, 255, 3)
    canvas[rows, columns] = (1 - alpha) * canvas[rows, columns] + alpha * colour
  image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
  image = np.asarray(image.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 3.5)))))
  noisy = image + rng.normal(0.0, 3.0, IMAGE_SHAPE)
  return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def make_images(num_images: int, seed: int = 0) -> list[np.ndarray]:
  from tripjax import data

  digits = np.rint(data.load_dataset("digits", "train", binarize=False).images
                   * 255).astype(np.uint8)
  rng = np.random.default_rng(seed)
  return [natural_image(rng, digits) for _ in range(num_images)]


def write_celeb_a(data_dir: str, jpegs: list[bytes], seed: int = 0) -> None:
  """A TFDS `celeb_a` dataset in `data_dir` from the TFDS builder (its features and
  ArrayRecord files), with `jpegs` as the train split and 64 of them as the others."""
  import importlib.resources

  import tensorflow_datasets as tfds

  # TFDS's builder imports the `importlib_resources` backport when it prepares a set;
  # Python >= 3.9's own module has what it uses (`abc.Traversable`, `files`).
  sys.modules.setdefault("importlib_resources", importlib.resources)
  builder = tfds.builder("celeb_a", data_dir=data_dir, file_format="array_record")
  features = builder.info.features
  attribute_names = sorted(features["attributes"].keys())
  landmark_names = sorted(features["landmarks"].keys())
  identity_names = sorted(features["identity"].keys())
  rng = np.random.default_rng(seed)

  def examples(split_jpegs, prefix):
    for index, jpeg in enumerate(split_jpegs):
      yield f"{prefix}{index:06d}.jpg", {
          "image": jpeg,
          "landmarks": {name: int(value) for name, value in
                        zip(landmark_names, rng.integers(0, 178, len(landmark_names)))},
          "attributes": {name: bool(value) for name, value in
                         zip(attribute_names, rng.integers(0, 2, len(attribute_names)))},
          "identity": {name: int(rng.integers(1, 10178)) for name in identity_names},
      }

  builder._split_generators = lambda dl_manager: {  # No download: our examples.
      "train": examples(jpegs, "train"), "validation": examples(jpegs[:64], "val"),
      "test": examples(jpegs[:64], "test")}
  builder.download_and_prepare()


def decode_times(jpegs: list[bytes], repeats: int = 3) -> tuple[float, float]:
  """Median ms per image of PIL's decode (as TFDS's numpy decoding) and of
  `data.center_crop_and_resize`."""
  from PIL import Image

  from tripjax import data

  decode, crop = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    images = [np.asarray(Image.open(io.BytesIO(jpeg))) for jpeg in jpegs]
    decode.append((time.perf_counter() - start) / len(jpegs))
    start = time.perf_counter()
    for image in images:
      data.center_crop_and_resize(image)
    crop.append((time.perf_counter() - start) / len(jpegs))
  return 1e3 * statistics.median(decode), 1e3 * statistics.median(crop)


# ------------------------------------------------------------------ the input


def pass_rate(dataset, num_workers: int, batches: list[np.ndarray]) -> tuple[float, float]:
  """(images/s after the first batch, seconds to the first batch) of one pass."""
  from tripjax import input_pipeline

  steps = [[indices] for indices in batches]
  start = time.perf_counter()
  reads = input_pipeline.read_steps(dataset, steps, num_workers=num_workers)
  next(reads)
  first = time.perf_counter()
  count = sum(len(read.indices) for step in reads for read in step)
  return count / (time.perf_counter() - first), first - start


def as_tfds_storage(dataset):
  """The same reads marked as TFDS files, so `read_steps` takes the grain path."""
  from tripjax import data

  return data.ImageDataset(name=dataset.name, split=dataset.split,
                           image_shape=dataset.image_shape, num_examples=len(dataset),
                           read_fn=dataset._read_fn, binarized=dataset.binarized,
                           attribute_names=dataset.attribute_names, storage="tfds")


def input_rates(dataset, cached, workers, repeats) -> dict[str, dict[int, list]]:
  """{row: {workers: [(images/s, start-up s), ...]}}, the settings taking turns."""
  from tripjax import data

  batches = data.batch_indices(len(dataset), BATCH, seed=0, epoch=0)
  settings = [("decode every epoch (grain)", dataset, w) for w in workers]
  settings += [("cache, read directly (the loop's path)", cached, 0)]
  settings += [("cache through grain", as_tfds_storage(cached), w)
               for w in workers if w > 0]
  rates: dict[str, dict[int, list]] = {}
  for _ in range(repeats):
    for row, source, num_workers in settings:
      rates.setdefault(row, {}).setdefault(num_workers, []).append(
          pass_rate(source, num_workers, batches))
      print(f"  {row}, {num_workers} workers: {rates[row][num_workers][-1][0]:.0f} "
            f"images/s", flush=True)
  return rates


# ------------------------------------------------------------------ the steps


def step_rates(dataset, workers, num_steps: int, repeats: int) -> dict[str, float]:
  """Median images/s of the VAE step (alone, and fed by the pipeline per worker
  count) and of the GAN step (alone)."""
  import jax

  from benchmarks import gan_step
  from benchmarks import vae_step
  from tripjax import data
  from tripjax.training import loop
  from tripjax.training import sharding

  mesh = sharding.make_data_mesh()
  vae = vae_step.StepTimer("normal", batch=BATCH, latent_dim=100, num_components=10,
                           rank=20, mesh=mesh)
  gan = gan_step.UpdateTimer("normal", False, batch=64, latent_dim=100,
                             num_components=10, rank=20, mesh=mesh)
  n_critic = 5
  for _ in range(2):
    vae.step(), gan.critic_step(), gan.generator_step()

  def gan_step_time():
    return sum(gan.critic_step() for _ in range(n_critic)) + gan.generator_step()

  batch_sharding = sharding.batch_sharded(mesh)
  batches = data.batch_indices(len(dataset), BATCH, seed=0, epoch=1)[:num_steps + 1]

  def fed(num_workers):
    """Seconds per step after the first (which waits for the workers to start)."""
    def run():
      for count, batch in enumerate(loop._prefetched_batches(
          dataset, [[b] for b in batches], loop.default_prepare_batch, False,
          num_workers=num_workers)):
        vae.state, vae.guard, metrics = vae.train_step(
            vae.state, vae.guard, sharding.shard_batch(batch, mesh, batch_sharding),
            vae.rng)
        if count == 0:
          jax.block_until_ready(metrics)
          start = time.perf_counter()
      jax.block_until_ready(metrics)
      return (time.perf_counter() - start) / (len(batches) - 1)
    return run

  def alone():
    return statistics.median(vae.step() for _ in range(num_steps))

  steps = {"VAE step alone": alone, "GAN step alone": gan_step_time}
  steps.update({f"VAE step fed, {w} workers": fed(w) for w in workers})
  times = common.interleaved(steps, repeats)
  images = {name: (64 * n_critic if name.startswith("GAN") else BATCH) for name in steps}
  return {name: images[name] / statistics.median(seconds)
          for name, seconds in times.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--images", type=int, default=2048)
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quality", type=int, default=92, help="JPEG quality")
  parser.add_argument("--steps", type=int, default=6,
                      help="VAE steps per timing (each about 2 s on 2 CPU cores)")
  parser.add_argument("--no-steps", action="store_true", help="skip the step timings")
  parser.add_argument("--keep", help="write the dataset and cache here and keep them")
  common.add_devices_flag(parser)
  args = parser.parse_args(argv)
  if not args.no_steps:
    common.set_cpu_devices(args.devices, [BATCH, 64])

  from tripjax import data
  from tripjax import input_pipeline

  folder = args.keep or tempfile.mkdtemp(prefix="input_pipeline_benchmark-")
  try:
    start = time.perf_counter()
    images = make_images(args.images)
    jpegs = [encode_jpeg(image, args.quality) for image in images]
    mean_kb = statistics.mean(len(jpeg) for jpeg in jpegs) / 1e3
    decode_ms, crop_ms = decode_times(jpegs[:256])
    data_dir = os.path.join(folder, "tfds")
    if not os.path.isdir(os.path.join(data_dir, "celeb_a")):
      write_celeb_a(data_dir, jpegs)
    print(f"{args.images} CelebA-shaped JPEGs (quality {args.quality}): mean "
          f"{mean_kb:.1f} KB (real CelebA: about {CELEB_A_MEAN_JPEG_BYTES / 1e3:.1f} KB); "
          f"PIL decode {decode_ms:.2f} ms/image, crop + resize {crop_ms:.2f} ms/image; "
          f"written as TFDS celeb_a in {time.perf_counter() - start:.0f} s; "
          f"{common.load_average()}.", flush=True)

    dataset = data.load_dataset("celeb_a", "train", data_dir=data_dir)
    start = time.perf_counter()
    cached = input_pipeline.cached(dataset, os.path.join(folder, "cache"),
                                   num_workers=max(args.workers))
    print(f"cache built in {time.perf_counter() - start:.1f} s "
          f"({max(args.workers)} workers)", flush=True)
    rates = input_rates(dataset, cached, args.workers, args.repeats)
    steps = ({} if args.no_steps else
             step_rates(dataset, args.workers, args.steps, args.repeats))
  finally:
    if not args.keep:
      shutil.rmtree(folder, ignore_errors=True)

  print(f"\nTraining input, CelebA-shaped ({IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} JPEG, "
        f"{mean_kb:.1f} KB) -> 64x64x3, batch {BATCH}, {args.images} images per pass; "
        f"median of {args.repeats}; {os.cpu_count()} cores; {common.load_average()} at "
        "the end.\n")
  print("| input | workers | images/s | first batch after (s) |")
  print("|---|---|---|---|")
  for row, by_workers in rates.items():
    for num_workers, runs in by_workers.items():
      print(f"| {row} | {num_workers} | {statistics.median(r for r, _ in runs):,.0f} | "
            f"{statistics.median(s for _, s in runs):.1f} |")
  if steps:
    print("\n| step | images/s consumed |\n|---|---|")
    for name, rate in steps.items():
      print(f"| {name} | {rate:,.0f} |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
