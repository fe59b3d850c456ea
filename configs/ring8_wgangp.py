"""Mode test: WGAN-GP with MLPs on the ring of 8 Gaussians (radius 2, sd 0.02).

python -m train.gan --config configs/ring8_wgangp.py --workdir runs/ring8

The setting of the mode-collapse tests (Unrolled GAN, VEEGAN, PacGAN): 2-D points
(`data.name = "ring8"`, 100,000 training draws), a 4x400 ReLU generator and a 3x200
ReLU critic without normalization (PacGAN's sizes), latent size 2, batch 256, 5 critic
updates per generator step, Adam(1e-4, 0.5, 0.9). The penalty weight is 0.1, the
value of the WGAN-GP authors' toy experiments (gan_toy.py: "smaller lambda seems to
help for toy tasks"), not the images' 10. The prior is N(0, I); `benchmarks.gan_modes`
trains the other priors with these settings. Every 1,000 steps (and at the end): a
scatter PNG of 2,500 samples over the modes in workdir/images/ and the mode metrics
(modes_covered, high_quality_share, reverse_kl) in metrics.jsonl.

These shared settings are a starting point, not yet tuned for N(0, I) (issue 20).
"""
from tripjax.configs import base_gan


def get_config():
  config = base_gan.get_config()
  config.data.name = "ring8"
  config.model.latent_dim = 2
  config.model.widths = (400, 400, 400, 400)
  config.model.critic_widths = (200, 200, 200)
  config.model.critic_norm = "none"
  config.prior.kind = "normal"
  config.prior.num_components = 10
  config.prior.rank = 40
  config.gan.gradient_penalty = 0.1
  config.gan.n_critic = 5
  config.train.batch_size = 256
  config.train.learning_rate = 1e-4
  config.train.num_steps = 10_000
  config.train.cpu_devices = 1
  config.train.checkpoint_every_steps = 1000
  config.train.log_every_steps = 100
  config.eval.every_epochs = 0
  config.eval.every_steps = 1000
  return config
