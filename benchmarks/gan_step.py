"""GAN-TRIP step times: the critic update and the generator + prior update, per prior.

  python -m benchmarks.gan_step                      # 64x64x3, batch 64, latent 100
  python -m benchmarks.gan_step --batch 16 --repeats 3 --devices 1
  python -m benchmarks.gan_step --reference torch    # and the same updates in PyTorch

The paper's 64 px generator and layer-norm critic (`tripjax.models.gan`, WGAN-GP,
penalty 10) with the pure updates the trainer runs (`tripjax.training.gan.make_updates`),
each jitted alone with the batch split over the devices as `tripjax.training.loop`
splits it (on a CPU one XLA device per core, as `python -m train.gan` does; `--devices
N` sets the count): one critic update (with its gradient penalty) and one generator
update, which for a learnable prior also carries the score-function surrogate of eq. 10 (the
prior's log-density of the batch's z and its gradient). Rows: N(0, I); TRIP fixed (F,
no prior term); TRIP learnable (L, N = 10, m = 20 by default); GMM L. The REINFORCE
term's cost is TRIP L's generator update over TRIP F's. Medians after compilation and
one warm-up call, all variants taking turns within every repeat.

`--reference torch` also times the same two updates of the same generator and critic
written in PyTorch (`benchmarks.torch_reference.TorchGanUpdates`, NCHW, no prior term,
`torch.set_num_threads` = every usable core, `common.cpu_threads`) and prints each
update's time over PyTorch's, against the N(0, I) rows.
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from benchmarks import common
from tripjax.configs import celeba_wgangp_trip
from tripjax.models import gan as gan_models
from tripjax.training import gan
from tripjax.training import sharding

IMAGE_SHAPE = (64, 64, 3)
# name -> (prior.kind, prior.learnable)
VARIANTS = {"normal": ("normal", False), "trip F": ("trip", False),
            "trip L": ("trip", True), "gmm L": ("gmm", True)}


class UpdateTimer:
  """Jitted critic and generator updates of one prior variant on fixed inputs."""

  def __init__(self, kind: str, learnable: bool, *, batch: int, latent_dim: int,
               num_components: int, rank: int, mesh: jax.sharding.Mesh):
    config = celeba_wgangp_trip.get_config()
    config.model.latent_dim = latent_dim
    config.prior.kind, config.prior.learnable = kind, learnable
    config.prior.num_components, config.prior.rank = num_components, rank
    self.model = gan.build_model(config, IMAGE_SHAPE)
    optimizers = gan.make_optimizers(config)
    state = gan.init_state(self.model, optimizers, jax.random.PRNGKey(0))
    updates = gan.make_updates(self.model, optimizers, **gan.step_settings(config))
    replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    state = sharding.replicate(state, mesh)
    rng = np.random.default_rng(0)
    shape = (batch,) + IMAGE_SHAPE
    images = [jax.device_put(rng.uniform(-1, 1, shape).astype("float32"), split)
              for _ in range(3)]
    z = jax.device_put(self.model.sample_latents(
        state.params[gan.PRIOR], jax.random.PRNGKey(1), batch), split)
    carry = gan.CriticCarry(state.params[gan.CRITIC], state.batch_stats,
                            state.critic_opt_state)
    # As tripjax.training.loop jits the whole step: state replicated, batch split.
    critic = jax.jit(updates.critic, in_shardings=(replicated, split, split, split),
                     out_shardings=replicated)
    generator = jax.jit(updates.generator, in_shardings=(replicated,) * 4 + (split,),
                        out_shardings=replicated)
    trainable = {gan.GENERATOR: state.params[gan.GENERATOR],
                 gan.PRIOR: state.params[gan.PRIOR]}
    self.critic_step = lambda: common.timed(lambda: critic(carry, *images))
    self.generator_step = lambda: common.timed(lambda: generator(
        trainable, state.generator_opt_state, carry.params, carry.batch_stats, z))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--latent", type=int, default=100)
  parser.add_argument("--num-components", type=int, default=10)
  parser.add_argument("--rank", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                      choices=list(VARIANTS))
  parser.add_argument("--reference", choices=("none", "torch"), default="none",
                      help="also time the updates in PyTorch")
  common.add_devices_flag(parser)
  args = parser.parse_args(argv)
  if args.reference == "torch" and "normal" not in args.variants:
    parser.error("--reference torch compares against the normal rows: add "
                 "--variants normal")
  common.set_cpu_devices(args.devices, [args.batch])
  mesh = sharding.make_data_mesh()
  sharding.check_batch_size(args.batch, mesh)

  steps = {}
  for name in args.variants:
    timer = UpdateTimer(*VARIANTS[name], batch=args.batch, latent_dim=args.latent,
                        num_components=args.num_components, rank=args.rank,
                        mesh=mesh)
    for _ in range(2):  # compile + warm-up
      timer.critic_step()
      timer.generator_step()
    steps[f"{name} critic"] = timer.critic_step
    steps[f"{name} generator"] = timer.generator_step
    print(f"{name}: compiled", flush=True)
  if args.reference == "torch":
    reference = make_torch_updates(args.batch, args.latent, common.cpu_threads())
    steps[f"{TORCH} critic"] = reference.critic_update
    steps[f"{TORCH} generator"] = reference.generator_update
  times = common.interleaved(steps, args.repeats)

  print(f"\nGAN updates, {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]}, batch "
        f"{args.batch}, latent {args.latent}, N={args.num_components}, m={args.rank}; "
        f"{len(jax.devices())} x {jax.devices()[0].platform}, median of {args.repeats} "
        "after compilation; "
        f"{common.load_average()}.\n")
  print("| prior | critic update ms | generator (+ prior) update ms |")
  print("|---|---|---|")
  for name in args.variants:
    print(f"| {name} | {common.median_ms(times[f'{name} critic']):.1f} | "
          f"{common.median_ms(times[f'{name} generator']):.1f} |")
  if {"trip F", "trip L"} <= set(args.variants):
    fixed = common.median_ms(times["trip F generator"])
    learned = common.median_ms(times["trip L generator"])
    print(f"\nREINFORCE term (trip L - trip F generator update): "
          f"{learned - fixed:+.1f} ms, {100 * (learned / fixed - 1):+.1f}% of the "
          "generator update.")
  if args.reference == "torch":
    print_reference_table(times)
  return 0


TORCH = "torch"


def make_torch_updates(batch: int, latent_dim: int, threads: int):
  """`benchmarks.torch_reference.TorchGanUpdates` at the benchmark's sizes, warmed up."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  updates = torch_reference.TorchGanUpdates(IMAGE_SHAPE, batch, latent_dim,
                                            gan_models.PAPER_WIDTHS)
  for _ in range(2):
    updates.critic_update()
    updates.generator_update()
  return updates


def print_reference_table(times: dict) -> None:
  """tripjax's N(0, I) updates over PyTorch's."""
  import torch  # pylint: disable=g-import-not-at-top
  print(f"\n| update | tripjax (normal) ms | torch {torch.__version__} ms | "
        "tripjax / torch |")
  print("|---|---|---|---|")
  for update in ("critic", "generator"):
    ours = common.median_ms(times[f"normal {update}"])
    theirs = common.median_ms(times[f"{TORCH} {update}"])
    print(f"| {update} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
  raise SystemExit(main())
