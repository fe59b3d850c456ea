"""VAE train-step time with a normal, GMM or TRIP prior at the paper's CelebA setting.

  python -m benchmarks.vae_step                      # 64x64x3, batch 128, latent 100
  python -m benchmarks.vae_step --batch 32 --repeats 5

Times the trainer's own step (`tripjax.training.vae.make_train_step`, jitted with the
shardings `tripjax.training.loop` uses) for the paper's architecture
(`tripjax.models.vae.paper_encoder_decoder`: 4 stride-2 convs 64 -> 512 channels,
LeakyReLU 0.2, mirrored transposed-conv decoder) with the discretized-logistic decoder
the trainer uses on CelebA, Adam, one ELBO sample. Priors: N(0, I), factorized GMM
(N = 10 per variable) and TRIP (N = 10, m = 20), all learnable.

Each step is timed alone (`time.perf_counter` around a call and `block_until_ready`),
after compilation and two warm-up steps; the priors take turns within every repeat, so
load on the machine hits them alike. Reported: the median step in ms, its overhead over
the normal prior's, and the prior alone (log_prob + its gradient w.r.t. the prior
parameters and z, batch x latent, median of the same number of repeats).
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import celeba_vae_trip
from tripjax import likelihoods
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import sharding
from tripjax.training import vae

PRIOR_KINDS = ("normal", "gmm", "trip")
IMAGE_SHAPE = (64, 64, 3)
LIKELIHOOD = "discretized_logistic"


def build_paper_model(prior_kind: str, latent_dim: int, num_components: int,
                      rank: int) -> vae.VaeModel:
  """The paper's 64x64x3 encoder/decoder with a `prior_kind` prior over latent_dim."""
  encoder, decoder = vae_models.paper_encoder_decoder(
      latent_dim, params_per_channel=likelihoods.num_params_per_channel(LIKELIHOOD))
  prior = priors.make_prior(prior_kind, latent_dim, num_components=num_components,
                            rank=rank)
  return vae.VaeModel(encoder=encoder, decoder=decoder, prior=prior,
                      likelihood=LIKELIHOOD, image_shape=IMAGE_SHAPE,
                      latent_dim=latent_dim)


class StepTimer:
  """One prior's compiled train step and prior gradient, with their inputs."""

  def __init__(self, prior_kind: str, *, batch: int, latent_dim: int,
               num_components: int, rank: int, mesh: jax.sharding.Mesh):
    config = celeba_vae_trip.get_config()
    config.prior.kind = prior_kind
    self.model = build_paper_model(prior_kind, latent_dim, num_components, rank)
    optimizer = vae.make_optimizer(config)
    replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    self.state = sharding.replicate(
        vae.init_state(self.model, optimizer, jax.random.PRNGKey(0)), mesh)
    self.num_params = vae_models.count_params(
        {name: self.state.params[name] for name in ("encoder", "decoder")})
    # As tripjax.training.loop jits the step.
    self.train_step = jax.jit(vae.make_train_step(self.model, optimizer),
                              in_shardings=(replicated, split, replicated),
                              out_shardings=replicated)
    pixels = np.random.default_rng(0).integers(0, 256, (batch,) + IMAGE_SHAPE)
    self.batch = sharding.shard_batch({"image": (pixels / 255.0).astype(np.float32)},
                                      mesh)
    self.rng = jax.random.PRNGKey(1)
    self.step_count = 0

    prior = self.model.prior

    def negative_mean_log_prob(prior_params, z):
      return -jnp.mean(prior.log_prob(prior_params, z))

    self.prior_grad = jax.jit(jax.value_and_grad(negative_mean_log_prob,
                                                 argnums=(0, 1)))
    self.prior_params = self.state.params["prior"]
    self.z = jax.random.normal(jax.random.PRNGKey(2), (batch, latent_dim))

  def step(self) -> float:
    """Runs one train step (state carried over); returns its wall time in seconds."""
    rng = jax.random.fold_in(self.rng, self.step_count)
    start = time.perf_counter()
    state, metrics = self.train_step(self.state, self.batch, rng)
    jax.block_until_ready((state, metrics))
    elapsed = time.perf_counter() - start
    if not np.isfinite(float(metrics["loss"])):
      raise FloatingPointError(f"non-finite loss with the {self.model.prior.kind} prior")
    self.state, self.step_count = state, self.step_count + 1
    return elapsed

  def prior_step(self) -> float:
    """Wall time in seconds of the prior's log_prob + gradient alone."""
    start = time.perf_counter()
    jax.block_until_ready(self.prior_grad(self.prior_params, self.z))
    return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--latent", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=10,
                      help="timed steps per prior (after compilation and warm-up)")
  parser.add_argument("--num-components", type=int, default=10)
  parser.add_argument("--rank", type=int, default=20)
  args = parser.parse_args(argv)
  mesh = sharding.make_data_mesh()
  sharding.check_batch_size(args.batch, mesh)

  timers = {}
  for kind in PRIOR_KINDS:
    start = time.perf_counter()
    timer = StepTimer(kind, batch=args.batch, latent_dim=args.latent,
                      num_components=args.num_components, rank=args.rank, mesh=mesh)
    for _ in range(3):  # compile + 2 warm-up steps
      timer.step()
      timer.prior_step()
    timers[kind] = timer
    print(f"{kind}: compiled and warmed up in {time.perf_counter() - start:.1f} s",
          flush=True)

  step_times = {kind: [] for kind in PRIOR_KINDS}
  prior_times = {kind: [] for kind in PRIOR_KINDS}
  for _ in range(args.repeats):  # priors take turns: machine load hits all alike
    for kind, timer in timers.items():
      step_times[kind].append(timer.step())
      prior_times[kind].append(timer.prior_step())

  devices = jax.devices()
  print(f"\nVAE train step, {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]}, batch "
        f"{args.batch}, latent {args.latent}, N={args.num_components}, m={args.rank} "
        f"(gmm: m=1); paper architecture, {timers['normal'].num_params / 1e6:.2f} M "
        f"encoder+decoder params ({LIKELIHOOD} decoder); {len(devices)} x "
        f"{devices[0].platform}; median of {args.repeats} steps after compilation.\n")
  normal_ms = 1e3 * statistics.median(step_times["normal"])
  print("| prior | step ms | overhead vs normal % | prior log_prob+grad ms |")
  print("|---|---|---|---|")
  for kind in PRIOR_KINDS:
    step_ms = 1e3 * statistics.median(step_times[kind])
    prior_ms = 1e3 * statistics.median(prior_times[kind])
    overhead = 100.0 * (step_ms / normal_ms - 1.0)
    print(f"| {kind} | {step_ms:.1f} | {overhead:+.1f} | {prior_ms:.2f} |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
