"""VAE train-step time with a normal, GMM or TRIP prior at the paper's CelebA setting.

  python -m benchmarks.vae_step                      # 64x64x3, batch 128, latent 100
  python -m benchmarks.vae_step --reference torch --devices 1   # and 2 (all cores)
  python -m benchmarks.vae_step --batch 32 --repeats 5 --priors normal

Times the trainer's own step (`tripjax.training.vae.make_train_step`) as the loop runs
it (`tripjax.training.loop.compile_step`: the step key folded in and the non-finite
check on the device, the batch split over the devices, the state donated) for the paper's architecture
(`tripjax.models.vae.paper_encoder_decoder`: 4 stride-2 convs 64 -> 512 channels,
LeakyReLU 0.2, mirrored transposed-conv decoder) with the discretized-logistic decoder
the trainer uses on CelebA, Adam, one ELBO sample. Priors: N(0, I), factorized GMM
(N = 10 per variable) and TRIP (N = 10, m = 20), all learnable. On a CPU the batch is
split over one XLA device per core, as `python -m train.vae` does (`--devices N` sets
the count).

`--reference torch` also times one Adam step of the same model and loss written in
PyTorch (`benchmarks.torch_reference`, N(0, I) prior, NCHW, `torch.set_num_threads`
= every usable core, `common.cpu_threads`) and prints tripjax's time over PyTorch's.

Each step is timed alone (`time.perf_counter` around a call and `block_until_ready`),
after compilation and two warm-up steps; the priors (and PyTorch) take turns within
every repeat, so load on the machine hits them alike. Reported: the median step in ms,
its overhead over the first prior's (normal), and the prior alone (log_prob + its
gradient w.r.t. the prior parameters and z, batch x latent, median of the same number
of repeats), with the machine's load average.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import celeba_vae_trip
from tripjax import likelihoods
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import loop
from tripjax.training import sharding
from tripjax.training import vae

from benchmarks import common

PRIOR_KINDS = ("normal", "gmm", "trip")
IMAGE_SHAPE = (64, 64, 3)
LIKELIHOOD = "discretized_logistic"
TORCH = "torch"


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
    self.state = sharding.replicate(
        vae.init_state(self.model, optimizer, jax.random.PRNGKey(0)), mesh)
    self.num_params = vae_models.count_params(
        {name: self.state.params[name] for name in ("encoder", "decoder")})
    # As tripjax.training.loop compiles and runs the step.
    self.train_step = loop.compile_step(vae.make_train_step(self.model, optimizer),
                                        mesh)
    self.guard = loop.new_guard(0, mesh)
    pixels = np.random.default_rng(0).integers(0, 256, (batch,) + IMAGE_SHAPE)
    self.batch = sharding.shard_batch({"image": (pixels / 255.0).astype(np.float32)},
                                      mesh)
    self.rng = sharding.replicate(jax.random.PRNGKey(1), mesh)

    prior = self.model.prior

    def negative_mean_log_prob(prior_params, z):
      return -jnp.mean(prior.log_prob(prior_params, z))

    self.prior_grad = jax.jit(jax.value_and_grad(negative_mean_log_prob,
                                                 argnums=(0, 1)))
    # A copy, placed like the state: the train step consumes (donates) its state.
    self.prior_params = sharding.replicate(jax.device_get(self.state.params["prior"]),
                                           mesh)
    self.z = jax.random.normal(jax.random.PRNGKey(2), (batch, latent_dim))

  def step(self) -> float:
    """Runs one train step (state carried over); returns its wall time in seconds."""
    start = time.perf_counter()
    self.state, self.guard, metrics = self.train_step(self.state, self.guard,
                                                      self.batch, self.rng)
    jax.block_until_ready((self.state, self.guard, metrics))
    elapsed = time.perf_counter() - start
    if not np.isfinite(float(metrics["loss"])):
      raise FloatingPointError(f"non-finite loss with the {self.model.prior.kind} prior")
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
  parser.add_argument("--priors", nargs="+", default=list(PRIOR_KINDS),
                      choices=PRIOR_KINDS)
  parser.add_argument("--reference", choices=("none", "torch"), default="none",
                      help="also time the PyTorch step of the same model (normal prior)")
  common.add_devices_flag(parser)
  args = parser.parse_args(argv)
  common.set_cpu_devices(args.devices, [args.batch])
  mesh = sharding.make_data_mesh()
  sharding.check_batch_size(args.batch, mesh)

  steps, timers = {}, {}
  for kind in args.priors:
    start = time.perf_counter()
    timer = StepTimer(kind, batch=args.batch, latent_dim=args.latent,
                      num_components=args.num_components, rank=args.rank, mesh=mesh)
    for _ in range(3):  # compile + 2 warm-up steps
      timer.step()
      timer.prior_step()
    timers[kind], steps[kind], steps[f"{kind} prior"] = (timer, timer.step,
                                                          timer.prior_step)
    print(f"{kind}: compiled and warmed up in {time.perf_counter() - start:.1f} s",
          flush=True)
  threads = common.cpu_threads()
  if args.reference == "torch":
    steps[TORCH] = make_torch_step(args.batch, args.latent, threads).step
  times = common.interleaved(steps, args.repeats)

  devices = jax.devices()
  first = timers[args.priors[0]]
  print(f"\nVAE train step, {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]}, batch "
        f"{args.batch}, latent {args.latent}, N={args.num_components}, m={args.rank} "
        f"(gmm: m=1); paper architecture, {first.num_params / 1e6:.2f} M "
        f"encoder+decoder params ({LIKELIHOOD} decoder); {len(devices)} x "
        f"{devices[0].platform}; median of {args.repeats} steps after compilation; "
        f"{common.load_average()} at the end.\n")
  base_ms = common.median_ms(times[args.priors[0]])
  print(f"| prior | step ms | overhead vs {args.priors[0]} % | "
        "prior log_prob+grad ms |")
  print("|---|---|---|---|")
  for kind in args.priors:
    step_ms = common.median_ms(times[kind])
    overhead = 100.0 * (step_ms / base_ms - 1.0)
    print(f"| {kind} | {step_ms:.1f} | {overhead:+.1f} | "
          f"{common.median_ms(times[f'{kind} prior']):.2f} |")
  if args.reference == "torch":
    print_reference_table(times, args.priors, f"{len(devices)} {devices[0].platform} "
                          f"device(s)", threads)
  return 0


def make_torch_step(batch: int, latent_dim: int, threads: int):
  """The PyTorch reference step (`benchmarks.torch_reference.TorchVaeStep`) on the
  benchmark's batch, warmed up, with `threads` intra-op threads."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  pixels = np.random.default_rng(0).integers(0, 256, (batch,) + IMAGE_SHAPE)
  step = torch_reference.TorchVaeStep((pixels / 255.0).astype(np.float32), latent_dim)
  for _ in range(2):
    step.step()
  return step


def print_reference_table(times: dict, kinds, tripjax_label: str, threads: int) -> None:
  """tripjax's step time per prior next to PyTorch's, and their ratio."""
  import torch  # pylint: disable=g-import-not-at-top
  torch_ms = common.median_ms(times[TORCH])
  print("\n| step | ms | time / torch time |")
  print("|---|---|---|")
  for kind in kinds:
    step_ms = common.median_ms(times[kind])
    print(f"| tripjax, {kind} prior, {tripjax_label} | {step_ms:.1f} | "
          f"{step_ms / torch_ms:.2f} |")
  print(f"| torch {torch.__version__}, normal prior, {threads} thread(s) | "
        f"{torch_ms:.1f} | 1.00 |")


if __name__ == "__main__":
  raise SystemExit(main())
