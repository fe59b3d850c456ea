"""FID (or the offline classifier FD) of a trained model's samples.

  python -m train.fid --workdir runs/x --weights inception_fid.npz --num-samples 10000
  python -m train.fid --workdir runs/x --metric classifier_fd \
      --classifier-workdir runs/classifier --num-samples 5000

Draws `--num-samples` images from the checkpoint's generator, compares their
feature statistics with the dataset's test split, and appends
{"split": "fid", "fid": ...} (or "classifier_fd") as a JSON line to
`workdir/metrics.jsonl`. `--weights` is the converted Inception file (see
`tripjax.metrics.inception` for the download URL and the converter).

Samples and reference (`load_checkpoint_sampler`, for `train.vae` workdirs): the
samples are the decoder means of z ~ p(z) at the restored checkpoint (as in the
per-epoch sample grids). For the binarized digits/MNIST these means are grey-level
Bernoulli probabilities, so the reference is the whole test split at its original grey
levels (`load_dataset(..., binarize=False)`), not the binarized pixels the model was
trained on: a grey image is never compared with binary ones, and the classifier saw
both kinds in training. RGB sets (cifar10, celeb_a) are never binarized, so there the
reference is simply the test split. The number of samples and the seed are recorded.

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

from tripjax import data as data_lib
from tripjax.metrics import classifier_fd
from tripjax.metrics import frechet
from tripjax.metrics import inception
from tripjax.training import loop
from tripjax.training import vae

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


def load_checkpoint_sampler(workdir: str, step: Optional[int] = None,
                            ) -> Tuple[SampleFn, np.ndarray, dict]:
  """The prior sampler of a `train.vae` run, its reference images and checkpoint position.

  Rebuilds the model from `workdir/config.json` (`vae.load_config`), restores the
  checkpoint (`loop.restore_checkpoint`; default the newest) and samples decoder means
  of z ~ p(z) (`vae.prior_sample_images`).

  Args:
    workdir: a training workdir with config.json and checkpoints/.
    step: checkpoint step; None: the newest.

  Returns:
    sample_fn: key, n -> images (n, H, W, C) float32 in [0, 1] (decoder means).
    reference_images: the whole test split of the run's dataset, (N, H, W, C) in
      [0, 1], at grey levels (never binarized; see the module docstring).
    position: {"step", "epoch", "batches_done"} of the restored checkpoint.
  """
  config = vae.load_config(workdir)
  # The likelihood (hence the decoder's output size) is that of the data as trained on.
  trained_on = data_lib.load_dataset(config.data.name, "test",
                                     data_dir=config.data.data_dir)
  reference = data_lib.load_dataset(config.data.name, "test",
                                    data_dir=config.data.data_dir, binarize=False)
  model = vae.build_model(config, trained_on.image_shape, trained_on.likelihood)
  optimizer = vae.make_optimizer(config)
  # Only shapes and dtypes are needed to restore into: no initializer is compiled.
  abstract_state = jax.eval_shape(
      lambda key: vae.init_state(model, optimizer, key), jax.random.PRNGKey(0))
  state = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract_state)
  state, position = loop.restore_checkpoint(workdir, state, step=step)
  params = jax.device_get(state.params)

  def sample_fn(key, num_samples):
    return vae.prior_sample_images(model, params, key, num_samples)

  return sample_fn, reference.images, position


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
