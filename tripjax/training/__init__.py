"""Training: one way to run a task (`experiment`), its tasks, and the loop under them.

`experiment.train_and_evaluate(trainer, config, workdir)` runs any task module's
`TRAINER` (`vae`, `gan`, `cvae`, `classifier`; `trainers.TRAINERS` by `config.task`) on
the one loop (`loop.run`), with keys from named random streams (`rng`). The tasks share
`evaluation`, `optimizers` and, VAE and conditional VAE, `autoencoders`.
"""
