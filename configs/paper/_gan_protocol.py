"""The TRIP authors' GAN protocol (`wgan.py`, `train_wgan.py`), shared by the GAN
presets of configs/paper/."""
import ml_collections

GENERATOR_STEPS = 20_000
N_CRITIC = 4  # every 5th batch is a generator step: 4 critic : 1 generator
# The authors recreate their optimizers every 1,000 iterations (batches); 5 batches
# make one of our steps (4 critic batches + the generator's), so every 200 steps.
ITERATIONS_PER_OPTIMIZER = 1000
RESET_EVERY_STEPS = ITERATIONS_PER_OPTIMIZER // (N_CRITIC + 1)


def apply(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets the protocol's fields on a GAN config (in place) and returns it."""
  config.train.num_steps = GENERATOR_STEPS
  config.gan.n_critic = N_CRITIC
  config.train.learning_rate = 1e-4  # nets: Adam(1e-4, 0.5, 0.9)
  config.gan.adam_b1, config.gan.adam_b2 = 0.5, 0.9
  config.train.reset_optimizer_every_steps = RESET_EVERY_STEPS
  # The prior: Adam(1e-4) with torch's default betas, rewards divided by their std.
  config.prior.learning_rate = 1e-4
  config.prior.adam_b1, config.prior.adam_b2 = 0.9, 0.999
  config.prior.normalize_rewards = True
  config.prior.gradient_estimator = "score"
  config.train.checkpoint_every_steps = 1000
  config.eval.every_epochs = 0
  config.eval.every_steps = 1000  # sample grids
  return config
