"""Defaults every experiment shares: the data, the shared loop's `train` fields, `eval`.

Each trainer's base (`base_vae.py`, ...) adds its model, prior and task fields; the
experiment configs change a few values. Override any field from the command line, e.g.
`--config.train.seed=1`; a field that is not defined is an error.
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "vae"  # the trainer: vae | gan | cvae (set by each trainer's base)

  config.data = ml_collections.ConfigDict()
  # digits (offline, no download) | mnist | fashion_mnist | cifar10 | celeb_a
  config.data.name = "digits"
  # TFDS data_dir (None: TFDS's default); for fashion_mnist also a folder of its IDX
  # files (None: TFDS's if prepared there, else /usr/share/datasets/fashion-mnist/).
  config.data.data_dir = config_dict.placeholder(str)
  # Use only the first examples of a split (quick trials, tests); None: all.
  config.data.num_train_examples = config_dict.placeholder(int)
  config.data.num_eval_examples = config_dict.placeholder(int)
  # tfds: the splits of tripjax.data (TFDS's own, validation = the last 10% of train
  # where TFDS has none); random_90_10: every example pooled, a seeded random 90% train
  # and 10% test, no validation (the TRIP authors' CelebA split, seed 777);
  # no_validation: TFDS's test, and every other example as train (CIFAR-10's 50,000).
  config.data.split = "tfds"
  config.data.split_seed = 777
  # Training input of the TFDS sets (tripjax.input_pipeline): grain worker processes
  # that read and decode ahead (0: one thread in this process; README "Input pipeline"
  # says how many a GPU host wants), and a folder for the decoded, resized uint8 cache
  # (None: decode every epoch).
  config.data.num_workers = 0
  config.data.cache_dir = config_dict.placeholder(str)

  # What the shared loop reads (tripjax.training.loop.LoopOptions).
  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 20
  # Train exactly this many steps instead (as many epochs as that takes); None: epochs.
  config.train.num_steps = config_dict.placeholder(int)
  config.train.batch_size = 128
  config.train.learning_rate = 3e-4
  config.train.seed = 0
  config.train.checkpoint_every_steps = 500
  config.train.max_checkpoints_to_keep = 3
  config.train.log_every_steps = 50
  config.train.max_steps = config_dict.placeholder(int)  # stop early; rerun continues
  config.train.progress_bar = True
  # XLA:CPU devices on a machine without an accelerator (the batch is split over
  # them); None: one per usable core that divides the batch. Small models can run
  # faster on one device (each device's program has a fixed cost per step). Ignored
  # when XLA_FLAGS or JAX_NUM_CPU_DEVICES already set a count.
  config.train.cpu_devices = config_dict.placeholder(int)

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "test"
  config.eval.batch_size = 250
  config.eval.every_epochs = 1  # evaluate (and write image grids) every k epochs; 0: no
  config.eval.every_steps = 0  # also every k steps (learning curves); 0: no
  return config
