"""Mode test: WGAN-GP with MLPs on the 5x5 grid of 25 Gaussians (sd 0.05).

python -m train.gan --config configs/grid25_wgangp.py --workdir runs/grid25

`configs/ring8_wgangp.py` on `data.name = "grid25"` (centres {-4, -2, 0, 2, 4}^2): the
same networks (PacGAN's 4x400 generator and 3x200 critic), latent size 2, batch 256,
n_critic 5, Adam(1e-4, 0.5, 0.9), penalty weight 0.1, N(0, I) prior. TRIP and the GMMs
keep N = 10 Gaussians per latent variable (the paper's), not the grid's 5.

These shared settings are a starting point, not yet tuned for N(0, I) (issue 20).
"""
from tripjax.configs import ring8_wgangp


def get_config():
  config = ring8_wgangp.get_config()
  config.data.name = "grid25"
  return config
