"""The attribute classifier behind the CelebA condition violation rate: a small conv
net (`tripjax.models.classifier.AttributeClassifier`, ~1 M parameters) trained on the
14 conditions of `tripjax.data.CELEB_A_CONDITIONS` of the CelebA training faces.

python -m train.train_classifier --config celeba_attribute_classifier \
  --workdir runs/attr_classifier --config.data.data_dir=~/tensorflow_datasets

Then `configs/celeba_cvae_trip.py` reads it from `eval.classifier_workdir` (the same
runs/attr_classifier). Its validation and test accuracies per attribute are logged
and stored with it (attribute_classifier.json).
"""
import ml_collections

from tripjax.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task = "classifier"
  config.data.name = "celeb_a"  # 64x64 faces, the 14 conditions as targets

  config.model = ml_collections.ConfigDict()
  config.model.kind = "attributes"
  config.model.widths = (32, 64, 128, 128)  # stride-2 4x4 convs: 64 -> 4 pixels
  config.model.hidden = 256

  config.train.num_epochs = 3
  config.train.batch_size = 128
  config.train.learning_rate = 1e-3
  config.train.checkpoint_every_steps = 1000
  config.train.log_every_steps = 50

  config.eval.every_epochs = 0  # accuracies after the last step
  config.eval.batch_size = 500
  return config
