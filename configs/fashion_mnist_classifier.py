"""The Fashion-MNIST classifier behind the offline classifier FD of Fashion-MNIST runs:
the digit classifier's small CNN (`model.kind` "digits", 10 classes of 28x28x1 images)
trained on the 54,000 grey-level Fashion-MNIST training images.

python -m train.train_classifier --config configs/fashion_mnist_classifier.py \\
    --workdir runs/fashion_classifier

Its penultimate features are the FD feature space, so FD values compare only between
runs scored with the same classifier (this config).
"""
import ml_collections

from tripjax.configs import digits_classifier


def get_config() -> ml_collections.ConfigDict:
  config = digits_classifier.get_config()
  config.data.name = "fashion_mnist"
  config.train.num_epochs = 3  # 1,266 steps of batch 128
  config.train.checkpoint_every_steps = 500
  config.train.log_every_steps = 50
  return config
