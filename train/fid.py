"""FID (or the offline classifier FD) of a trained model's samples.

  python -m train.fid --workdir runs/x --weights inception_fid.npz --num-samples 10000
  python -m train.fid --workdir runs/x --metric classifier_fd \
      --classifier-workdir runs/classifier --num-samples 5000

Draws `--num-samples` images from the checkpoint's generator, compares their
feature statistics with the dataset's test split, and appends
{"split": "fid", "fid": ...} (or "classifier_fd") as a JSON line to
`workdir/metrics.jsonl`. `--weights` is the converted Inception file (see
`tripjax.metrics.inception` for the download URL and the converter).

The sampling functions are generic: `fid_from_sampler` and
`classifier_fd_from_sampler` take any `sample_fn(key, num_samples) -> images
(num_samples, H, W, C) in [0, 1]`, so trainers can call them directly (e.g.
classifier FD after each epoch).
"""

import argparse
import json
import math
import os
import sys
from typing import Any, Callable, Mapping, Optional, Tuple

import jax
import numpy as np
import tqdm

from tripjax.metrics import classifier_fd
from tripjax.metrics import frechet
from tripjax.metrics import inception

METRICS_FILENAME = "metrics.jsonl"

# key, num_samples -> images (num_samples, H, W, C) in [0, 1].
SampleFn = Callable[[jax.Array, int], Any]
# images (B, H, W, C) in [0, 1] -> features (B, f).
FeatureFn = Callable[[np.ndarray], np.ndarray]


def sampler_stats(sample_fn: SampleFn, feature_fn: FeatureFn, *, num_samples: int,
                  batch_size: int, seed: int = 0, progress: bool = True,
                  description: str = "samples") -> Tuple[np.ndarray, np.ndarray]:
  """Gaussian stats (mean (f,), cov (f, f)) of the features of `num_samples` samples.

  `sample_fn` is always asked for `batch_size` images (one compiled shape); the
  surplus of the last batch is dropped. Batch i uses key fold_in(key(seed), i).
  """
  if num_samples < 2:
    raise ValueError(f"num_samples must be at least 2, got {num_samples}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  base_key = jax.random.key(seed)
  features = []
  num_batches = math.ceil(num_samples / batch_size)
  for index in tqdm.trange(num_batches, desc=description, disable=not progress):
    images = np.asarray(sample_fn(jax.random.fold_in(base_key, index), batch_size))
    keep = min(batch_size, num_samples - index * batch_size)
    if images.shape[0] < keep:
      raise ValueError(f"sample_fn returned {images.shape[0]} images, asked for {batch_size}")
    # Features of the full batch (one compiled shape), then drop the surplus.
    features.append(np.asarray(feature_fn(images))[:keep])
  return frechet.gaussian_stats(np.concatenate(features))


def fid_from_sampler(sample_fn: SampleFn, reference_images, inception_params,
                     *, num_samples: int = 10_000, batch_size: int = 100, seed: int = 0,
                     reference_stats: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                     progress: bool = True) -> float:
  """FID between `num_samples` samples and reference images.

  Args:
    sample_fn: key, n -> (n, H, W, C) images in [0, 1], C in {1, 3}.
    reference_images: (N, H', W', C) in [0, 1] or uint8, e.g. the test split.
      Ignored if `reference_stats` is given.
    inception_params: variables from `inception.load_inception_variables`.
    num_samples: samples to draw (10,000 or 50,000 for paper-comparable FID).
    batch_size: images per sampler / Inception call.
    seed: sampling seed.
    reference_stats: precomputed (mean, cov) of the reference features.
    progress: show tqdm bars.

  Returns:
    FID as a float ≥ 0.
  """
  def feature_fn(images):
    return inception.inception_features(inception_params, images, batch_size=batch_size)

  if reference_stats is None:
    reference_stats = frechet.gaussian_stats(inception.inception_features(
        inception_params, reference_images, batch_size=batch_size, progress=progress))
  stats = sampler_stats(sample_fn, feature_fn, num_samples=num_samples,
                        batch_size=batch_size, seed=seed, progress=progress,
                        description="samples (Inception)")
  return frechet.frechet_distance(*stats, *reference_stats)


def classifier_fd_from_sampler(sample_fn: SampleFn, reference_images, classifier_params,
                               *, num_samples: int = 5_000, batch_size: int = 500,
                               seed: int = 0, progress: bool = True) -> float:
  """Classifier FD (digits, 28×28×1) between samples and reference images; see FID."""
  def feature_fn(images):
    return classifier_fd.classifier_features(classifier_params, images, batch_size)

  reference_stats = frechet.gaussian_stats(feature_fn(reference_images))
  stats = sampler_stats(sample_fn, feature_fn, num_samples=num_samples,
                        batch_size=batch_size, seed=seed, progress=progress,
                        description="samples (classifier)")
  return frechet.frechet_distance(*stats, *reference_stats)


def append_metrics(workdir: str, record: Mapping[str, Any]) -> dict:
  """Appends `record` as one JSON line to workdir/metrics.jsonl; returns it."""
  os.makedirs(workdir, exist_ok=True)
  record = dict(record)
  with open(os.path.join(workdir, METRICS_FILENAME), "a") as f:
    f.write(json.dumps(record) + "\n")
  return record


# ---------------------------------------------------------------------------
# CHECKPOINT GLUE (TODO: wire once the VAE trainer's API is final).
# Everything above is independent of how models are trained; only this
# function knows the trainer. It must return
#   sample_fn(key, n) -> (n, H, W, C) float images in [0, 1],
#   reference_images: the test split of the run's dataset, (N, H, W, C) in [0, 1],
#   position: {"step": int, "epoch": int} of the restored checkpoint.
# Sketch with the trainer being written in tripjax/training/vae.py:
#   config = vae.load_config(workdir)
#   model, state = <build model + init state from config>
#   state, position = loop.restore_checkpoint(workdir, state, step=step)
#   sample_fn = lambda key, n: vae.prior_sample_images(model, state.params, key, n)
#   reference_images = data.load_dataset(config.data.name, "test", ...).images
# ---------------------------------------------------------------------------
def load_checkpoint_sampler(workdir: str, step: Optional[int] = None):
  """(sample_fn, reference_images, position) of a training run. NOT WIRED YET."""
  raise NotImplementedError(
      f"train.fid cannot load checkpoints from {workdir!r} yet: "
      "load_checkpoint_sampler in train/fid.py is to be wired to the VAE trainer. "
      "Meanwhile call fid_from_sampler / classifier_fd_from_sampler directly.")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="training run with checkpoints")
  parser.add_argument("--metric", choices=("fid", "classifier_fd"), default="fid")
  parser.add_argument("--weights", help="converted Inception weights (.npz/.msgpack); "
                      "required for --metric fid")
  parser.add_argument("--classifier-workdir", default="runs/classifier",
                      help="cached FD classifier (python -m train.train_classifier)")
  parser.add_argument("--num-samples", type=int, default=10_000)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (newest)")
  args = parser.parse_args(argv)
  if args.metric == "fid":
    if not args.weights:
      parser.error("--weights is required for --metric fid")
    scorer_params = inception.load_inception_variables(args.weights)  # fail early
  else:
    scorer_params, _ = classifier_fd.load_classifier(args.classifier_workdir)
  sample_fn, reference_images, position = load_checkpoint_sampler(args.workdir, args.step)
  if args.metric == "fid":
    value = fid_from_sampler(sample_fn, reference_images, scorer_params,
                             num_samples=args.num_samples, batch_size=args.batch_size,
                             seed=args.seed)
  else:
    value = classifier_fd_from_sampler(sample_fn, reference_images, scorer_params,
                                       num_samples=args.num_samples,
                                       batch_size=args.batch_size, seed=args.seed)
  record = append_metrics(args.workdir, {
      "step": position.get("step"), "epoch": position.get("epoch"), "split": args.metric,
      args.metric: value, "num_samples": args.num_samples, "seed": args.seed})
  print(json.dumps(record))
  return 0


if __name__ == "__main__":
  sys.exit(main())
