"""Scoring a trained run's samples: FID (Inception weights) or the offline classifier FD.

python -m train.fid --workdir runs/x --config.weights=inception_fid.npz
python -m train.fid --workdir runs/x --config.metric=classifier_fd
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.metric = "fid"  # fid | classifier_fd
  # fid: the converted Inception file (python -m tripjax.metrics.convert_inception).
  config.weights = config_dict.placeholder(str)
  # classifier_fd: the cached digit classifier (python -m train.train_classifier).
  config.classifier_workdir = "runs/classifier"
  config.num_samples = 10_000
  config.batch_size = 100
  config.seed = 0
  config.step = config_dict.placeholder(int)  # checkpoint step; None: the newest
  return config
