"""The one training loop (sharding, checkpoint/resume, metrics, progress, image grids).

`loop.run` drives any pure `train_step(state, batch, rng) -> (state, metrics)`;
`vae` supplies the VAE step, evaluation and data-driven prior refits.
"""
