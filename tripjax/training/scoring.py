"""FID or classifier FD of a trained run's samples (what `python -m train.fid` does).

`score_run(config, workdir)` restores the run's checkpoint with its trainer's sampler
(`tripjax.training.trainers.load_checkpoint_sampler`), scores `config.num_samples`
samples against the real test images (`tripjax.metrics.sampling`) and appends
{"split": config.metric, config.metric: value, "num_samples", "seed"} to the run's
metrics.jsonl. The config is `configs/fid.py`.
"""
from __future__ import annotations

import ml_collections

from tripjax.metrics import classifier_fd
from tripjax.metrics import inception
from tripjax.metrics import sampling
from tripjax.training import config_checks
from tripjax.training import metric_writer
from tripjax.training import trainers

METRICS = ("fid", "classifier_fd")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a scoring config."""
  config_checks.check_choice(config, "metric", METRICS)
  if config.metric == "fid" and not config.weights:
    raise config_checks.ConfigError(
        "weights", config.weights, "FID needs the converted Inception weights "
        "(python -m tripjax.metrics.convert_inception); pass --config.weights=FILE, "
        "or --config.metric=classifier_fd for the offline metric.")
  config_checks.check_int(config, "num_samples", minimum=2)
  config_checks.check_int(config, "batch_size", minimum=1)
  config_checks.check_int(config, "seed", minimum=0)
  config_checks.check_int(config, "step", minimum=0, optional=True)


def score_run(config: ml_collections.ConfigDict, workdir: str, *,
              progress: bool = True) -> dict:
  """Scores the samples of a run's checkpoint; returns the record appended to
  workdir/metrics.jsonl."""
  validate_config(config)
  # The scorer first: a missing weights file fails before any model is restored.
  if config.metric == "fid":
    scorer_params = inception.load_inception_variables(config.weights)
  else:
    scorer_params, _ = classifier_fd.load_classifier(config.classifier_workdir)
  sampler = trainers.load_checkpoint_sampler(workdir, config.step)
  score_fn = (sampling.fid_from_sampler if config.metric == "fid"
              else sampling.classifier_fd_from_sampler)
  value = score_fn(sampler.sample_fn, sampler.reference_images, scorer_params,
                   num_samples=config.num_samples, batch_size=config.batch_size,
                   seed=config.seed, progress=progress)
  with metric_writer.MetricWriter(workdir) as writer:
    return writer.write(sampler.position.step, sampler.position.epoch, config.metric,
                        {config.metric: value, "num_samples": config.num_samples,
                         "seed": config.seed})
