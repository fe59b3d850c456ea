"""Variance of the prior-gradient estimators (`tripjax.prior.expectation_gradient`).

  python -m benchmarks.prior_gradients              # the README table
  python -m benchmarks.prior_gradients --estimates 200 --batch 16   # a quick look

For a TRIP of d variables (N components each, rank m, the GAN's init with noisier
cores) and a test function f, draws `--estimates` independent estimates of the gradient
of E_p[f] from batches of B draws and prints, per parameter group (core roots, means,
log scales), the variance of one estimate summed over the group's coordinates, and the
ratio to "score"'s. Rows: "score" (leave-one-out baseline), "pathwise", and, to back the
choice documented in `tripjax.prior.gradients`, "pathwise, log p(s)": the same path for
the means and scales with the cores' score taken of log p(s) instead of log p(z) (also
unbiased; log p(z) is its Rao-Blackwellization). Functions: "cos", f(z) = Σ_j cos z_j;
"mlp", f(z) = v · tanh(W z + b) with fixed random weights (32 hidden units), not
additive. The runs are seeded: the table is reproducible.

  python -m benchmarks.prior_gradients --gan-workdir runs/gan   # plus a GAN's prior

`--gan-workdir` adds rows for a trained `train.gan` run with a TRIP or GMM prior: its
checkpoint's prior and f(z) = -D(G(z)), the per-example loss the GAN's prior minimizes
(eq. 10), from batches of the run's `train.batch_size`.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results_files
import tripjax.prior as trip

SETTINGS = ((4, 10, 4), (16, 10, 8))  # (d, N, m)
FUNCTIONS = ("cos", "mlp")
GROUPS = ("core_roots", "means", "log_scales")
LOG_P_OF_S = "pathwise, log p(s)"
STUDY = "prior_gradients"  # results/prior_gradients.json and .md


def test_function(name: str, d: int):
  """f: z (B, d) -> (B,)."""
  if name == "cos":
    return lambda z: jnp.sum(jnp.cos(z), axis=-1)
  rng = np.random.default_rng(d)
  weights = jnp.asarray(rng.normal(size=(d, 32)) / np.sqrt(d), jnp.float32)
  bias = jnp.asarray(rng.normal(size=32), jnp.float32)
  readout = jnp.asarray(rng.normal(size=32) / np.sqrt(32), jnp.float32)
  return lambda z: jnp.tanh(z @ weights + bias) @ readout


def _log_p_of_s_gradient(params, key, f, num_samples):
  """The "pathwise" estimate with the cores' score of log p(s), s the drawn components:
  p(s) is the log density of a TRIP with the same cores whose variables are discrete."""
  draws = trip.draw(params, key, num_samples)
  indices = draws.components.astype(params.means.dtype)

  def surrogate(params):
    values = f(trip.reparameterize(params, draws))
    discrete = dataclasses.replace(params, discrete=(True,) * params.num_variables)
    return jnp.mean(values) + trip.score_surrogate(trip.log_prob(discrete, indices),
                                                   values)

  return jax.grad(surrogate)(params)


def group_variances(params, f, estimator: str, num_estimates: int, batch: int,
                    seed: int, chunk: int | None = None) -> list:
  """Summed variance of one estimate over each group's coordinates; `chunk` estimates
  at a time (None: all at once)."""
  keys = jax.random.split(jax.random.key(seed), num_estimates)
  if estimator == LOG_P_OF_S:
    one = lambda key: _log_p_of_s_gradient(params, key, f, batch)  # noqa: E731
  else:
    one = lambda key: trip.expectation_gradient(  # noqa: E731
        params, key, f, batch, estimator=estimator).gradient
  if chunk is None:
    gradients = jax.jit(jax.vmap(one))(keys)
  else:
    gradients = jax.jit(lambda keys: jax.lax.map(one, keys, batch_size=chunk))(keys)
  return [float(np.asarray(getattr(gradients, group)).var(0).sum()) for group in GROUPS]


def gan_function(workdir: str):
  """(prior params, f(z) = -D(G(z)), batch size, label) of a GAN run's newest checkpoint."""
  from tripjax.training import gan
  from tripjax.training import workdirs

  config = workdirs.load_config(workdir)
  model, params, position = gan.restore(config, workdir)
  if model.has_batch_stats:
    raise ValueError(f"{workdir}: a batch-norm critic's scores are not per example.")

  def f(z):
    return -model.critic_scores(params["critic"], {}, model.generate(params, z))[0]

  prior = params["prior"]
  label = (f"GAN {config.prior.kind} ({prior.num_variables}, {prior.max_components}, "
           f"{prior.rank}), step {position.step}")
  return prior, f, config.train.batch_size, label


def records(setting: str, function: str, rows: dict) -> list[dict]:
  """One results record per estimator: {"setting", "function", "estimator",
  "variances" (per group of `GROUPS`)}."""
  return [{"setting": setting, "function": function, "estimator": estimator,
           "variances": variances} for estimator, variances in rows.items()]


def _number(value: float) -> str:
  return f"{value:.3g}" if value >= 1e-2 else f"{value:.2e}"


def render(results: dict) -> str:
  """The table of a results file: per (setting, f) the summed variance of each group
  and score's variance over this row's for the means and scales."""
  lines = [f"Variance of one estimate of the gradient of E_p[f] from B = {results['batch']} "
           f"draws, summed over each parameter group, {results['estimates']:,} estimates "
           f"per row ({results.get('gan_estimates', 0):,} and the run's B for the GAN "
           f"rows); ratio = score's variance / this row's. Rings: `trip.init` with "
           f"core_noise 0.5, seeded.", "",
           "| d, N, m | f | estimator | cores | means | scales | ratio means | "
           "ratio scales |", "|---|---|---|---|---|---|---|---|"]
  score = {(run["setting"], run["function"]): run["variances"]
           for run in results["runs"] if run["estimator"] == "score"}
  for run in results["runs"]:
    reference = score[(run["setting"], run["function"])]
    ratios = [reference[index] / run["variances"][index] for index in (1, 2)]
    lines.append(f"| {run['setting']} | {run['function']} | {run['estimator']} | "
                 + " | ".join(_number(value) for value in run["variances"]) + " | "
                 + " | ".join(f"{ratio:.1f}" for ratio in ratios) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--estimates", type=int, default=1000,
                      help="independent estimates per row (default 1000)")
  parser.add_argument("--batch", type=int, default=64, help="draws per estimate B")
  parser.add_argument("--gan-workdir", default=None, help="also a GAN run's prior")
  parser.add_argument("--gan-estimates", type=int, default=200,
                      help="estimates per GAN row (default 200)")
  parser.add_argument("--skip-rings", action="store_true",
                      help="only the GAN rows")
  parser.add_argument("--results-dir", default=results_files.RESULTS_DIR,
                      help="where the results files go (prior_gradients.{json,md}); "
                           "only with the default --estimates and --batch")
  args = parser.parse_args(argv)
  estimators = (*trip.ESTIMATORS, LOG_P_OF_S)
  runs = []
  start = time.perf_counter()
  for d, num_components, rank in () if args.skip_rings else SETTINGS:
    params = trip.init(jax.random.key(d), [trip.Continuous(num_components)] * d, rank,
                       core_noise=0.5)
    for name in FUNCTIONS:
      f = test_function(name, d)
      runs += records(f"{d}, {num_components}, {rank}", name, {
          estimator: group_variances(params, f, estimator, args.estimates, args.batch,
                                     seed=100 + d) for estimator in estimators})
  if args.gan_workdir:
    prior, f, batch, label = gan_function(args.gan_workdir)
    runs += records(f"{label}, B = {batch}", "GAN: −D(G(z))", {
        estimator: group_variances(prior, f, estimator, args.gan_estimates, batch,
                                   seed=7, chunk=10) for estimator in estimators})
  results = {"batch": args.batch, "estimates": args.estimates,
             "gan_estimates": args.gan_estimates if args.gan_workdir else 0,
             "gan_workdir": args.gan_workdir,
             "runs": [dict(run, fields={}, seed=0, commits=[]) for run in runs]}
  markdown = render(results)
  print(markdown)
  print(f"{time.perf_counter() - start:.0f} s on {jax.devices()[0].platform}")
  defaults = parser.parse_args([])
  if (args.estimates, args.batch, args.skip_rings) == (
      defaults.estimates, defaults.batch, False):
    command = "python -m benchmarks.prior_gradients" + (
        f" --gan-workdir {args.gan_workdir}" if args.gan_workdir else "")
    paths = results_files.write(STUDY, script="benchmarks.prior_gradients",
                                command=command, markdown=markdown,
                                results_dir=args.results_dir, **{
                                    key: value for key, value in results.items()
                                    if key != "runs"}, runs=results["runs"])
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
  main()
