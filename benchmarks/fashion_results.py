"""The prior comparison on Fashion-MNIST (issue 22): README's leading results table.

  nice -n 10 python -m benchmarks.fashion_results --parallel 2    # every row, 3 seeds
  python -m benchmarks.fashion_results --no-train                  # the table so far

Every run is one `python -m train.vae --config configs/fashion_vae_trip.py` (54,000
train / 10,000 test binarized Fashion-MNIST images, read from the IDX files in
`--data-dir`, by default where Debian's `dataset-fashion-mnist` installs them; latent
32, batch 128, N = 10, m = 20, EM refits after epoch 1 and every 5 epochs) for
`--steps` steps, seeded by `--config.train.seed`, with the config overrides of its
variant (`VARIANTS`): N(0, I); the factorized GMM (N = 10 per latent, the TRIP of rank
1) and TRIP (m = 20), F = `prior.learnable=False` (only the EM refits move the prior)
and L = learned; TRIP L with the prior's learning rate x10 (1e-2, the best setting of
the digits ablation); the paper's full-space GMM (`prior.kind=full_gmm`, issue 19) and
TRIP L under 4 RealNVP coupling layers (`prior.flows=4`). Variants whose config fields
a checkout lacks are listed as "not implemented", rows still to run as "not run yet".

Evaluation: the test ELBO on the first `EVAL_EXAMPLES` test images every
`--eval-every` steps (the curves), and after the last step the test ELBO and IWAE-100
on them; then the classifier FD of 5,000 prior samples (decoder means) against the
10,000 grey-level test images, in the feature space of the Fashion-MNIST classifier
(configs/fashion_mnist_classifier.py, trained once into `--classifier-workdir`). Every
run evaluates the same images, so the priors are compared on a paired basis.

The latent size and the length were chosen on the validation split (the last 6,000
training images; the test split is used only for the table), from two N(0, I) runs of
this config (latent 16 and 32) evaluated every 250 steps on it: `--selection` trains
(or resumes) them in `<workdir>/selection/normal_latent<d>` and writes their validation
curves to `<results-dir>/fashion_mnist_selection.{json,md}` (README's selection table).

Runs live in `<workdir>/steps_<S>/<variant>_seed<k>`; a finished run (its final
evaluation with IWAE-100 in metrics.jsonl) is skipped, an interrupted one resumes from
its last checkpoint, so the same command finishes the sweep. Outputs: the committed
results files `<results-dir>/fashion_mnist.{json,md}` (`benchmarks.results_files`;
the table says how many seeds each row has so far) and `<workdir>/curves.png` (test
ELBO versus steps, mean ± sd over seeds).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from benchmarks import results_files
from benchmarks import vae_results
from benchmarks.vae_results import ELBO_METRIC
from benchmarks.vae_results import FD_METRIC
from benchmarks.vae_results import FD_NUM_SAMPLES
from benchmarks.vae_results import IWAE_METRIC
from benchmarks.vae_results import Variant

CONFIG_PATH = "configs/fashion_vae_trip.py"
CLASSIFIER_CONFIG = "fashion_mnist_classifier"
DATA_DIR = "/usr/share/datasets/fashion-mnist/"  # tripjax.data.FASHION_MNIST_DIR
STUDY = "fashion_mnist"  # results/fashion_mnist.json and .md
DEFAULT_STEPS = 2500
DEFAULT_EVAL_EVERY = 250
EVAL_EXAMPLES = 1000  # the first test images: ELBO, IWAE-100 (the FD uses all 10,000)
TRAIN_EXAMPLES = 54000
PLANNED_SEEDS = 3

VARIANTS = {
    "normal": Variant("N(0, I)", (("prior.kind", "normal"),)),
    "gmm_F": Variant("GMM F (factorized)",
                     (("prior.kind", "gmm"), ("prior.learnable", False))),
    "gmm_L": Variant("GMM L (factorized)", (("prior.kind", "gmm"),)),
    "full_gmm_L": Variant("full GMM L (the paper's GMM, d·N = 320 components)",
                          (("prior.kind", "full_gmm"),)),
    "trip_F": Variant("TRIP F", (("prior.learnable", False),)),
    "trip_L": Variant("TRIP L", ()),  # the config as it is
    "trip_L_prior_lr_10": Variant("TRIP L, prior lr ×10 (1e-2)",
                                  (("prior.learning_rate", 1e-2),)),
    "trip_L_flows": Variant("TRIP L + 4 flows", (("prior.flows", 4),)),
}
ROWS = tuple(VARIANTS)
# The order the runs start in, within each seed: the comparisons that matter most first,
# so a partial sweep has them (the table keeps `ROWS` order).
PRIORITY = ("normal", "trip_L", "gmm_L", "trip_L_prior_lr_10", "full_gmm_L",
            "trip_L_flows", "trip_F", "gmm_F")


def variant_available(variant: str) -> bool:
  """Whether this checkout's VAE trainer accepts the variant's config (its fields
  exist and `tripjax.training.vae.validate_config` passes)."""
  from tripjax.configs import fashion_vae_trip  # JAX only when asked.
  from tripjax.training import config_checks
  from tripjax.training import vae

  config = fashion_vae_trip.get_config()
  for field, value in VARIANTS[variant].overrides:
    section, name = field.split(".")
    if name not in config[section]:
      return False
    config[section][name] = value
  try:
    vae.validate_config(config)
  except config_checks.ConfigError:
    return False
  return True


# The validation runs that chose the latent size and the length (`--selection`).
SELECTION_STUDY = "fashion_mnist_selection"
SELECTION_LATENTS = (16, 32)
SELECTION_STEPS = 2500
SELECTION_EVAL_EVERY = 250


def selection_workdir(root: str, latent: int) -> str:
  return os.path.join(root, "selection", f"normal_latent{latent}")


def selection_command(latent: int, workdir: str, data_dir: str = DATA_DIR) -> list[str]:
  """N(0, I) at latent size `latent`, its ELBO on the validation split every
  `SELECTION_EVAL_EVERY` steps (no IWAE)."""
  return [sys.executable, "-m", "train.vae", f"--config={CONFIG_PATH}",
          f"--workdir={workdir}", "--config.prior.kind=normal",
          f"--config.model.latent_dim={latent}", f"--config.data.data_dir={data_dir}",
          "--config.eval.split=validation", "--config.eval.every_epochs=0",
          f"--config.eval.every_steps={SELECTION_EVAL_EVERY}",
          "--config.eval.iwae_samples=1", f"--config.train.num_steps={SELECTION_STEPS}",
          "--config.train.progress_bar=False"]


def selection_curve(workdir: str) -> list[dict]:
  """[{"step", "validation_elbo", "validation_kl"}] of every evaluation, step order."""
  points = {record["step"]: {"step": record["step"],
                             "validation_elbo": record["validation_elbo"],
                             "validation_kl": record["validation_kl"]}
            for record in vae_results._read_records(workdir)
            if record.get("split") == "eval" and "validation_elbo" in record}
  return [points[step] for step in sorted(points)]


def render_selection(results: dict) -> str:
  """The selection table: validation ELBO per evaluated step, and the last KL."""
  runs = results["runs"]
  steps = sorted(set.intersection(*({point["step"] for point in run["curve"]}
                                    for run in runs)))
  lines = [f"N(0, I) on Fashion-MNIST, {CONFIG_PATH} with latent 16 or 32: ELBO on the "
           f"validation split (the last 6,000 training images), nats per image, every "
           f"{SELECTION_EVAL_EVERY} steps of batch 128; and the KL term at the last "
           f"step.", "",
           "| latent | " + " | ".join(f"{step:,}" for step in steps)
           + f" | KL at step {steps[-1]:,} |",
           "|---" * (len(steps) + 2) + "|"]
  for run in sorted(runs, key=lambda run: run["latent_dim"]):
    by_step = {point["step"]: point for point in run["curve"]}
    lines.append(f"| {run['latent_dim']} | "
                 + " | ".join(f"{by_step[step]['validation_elbo']:.2f}" for step in steps)
                 + f" | {by_step[steps[-1]]['validation_kl']:.2f} |")
  return "\n".join(lines) + "\n"


def run_selection(args: argparse.Namespace) -> str:
  """Trains (or resumes) the selection runs, writes their results files."""
  jobs = [(latent, 0) for latent in SELECTION_LATENTS]

  def final(workdir):
    curve = selection_curve(workdir)
    return curve[-1] if curve and curve[-1]["step"] == SELECTION_STEPS else None

  if args.train:
    vae_results.run_jobs(
        jobs, workdir_of=lambda job: selection_workdir(args.workdir, job[0]),
        command_of=lambda job, workdir: selection_command(job[0], workdir,
                                                          args.data_dir),
        finished=final,
        summary=lambda record: f"validation ELBO {record['validation_elbo']:.2f}",
        cache_dir=os.path.join(args.workdir, "jax_cache"), parallel=args.parallel)
  runs = []
  for latent, _ in jobs:
    workdir = selection_workdir(args.workdir, latent)
    if final(workdir) is not None:
      runs.append({"latent_dim": latent, "fields": {"prior.kind": "normal",
                                                   "model.latent_dim": latent},
                   "seed": 0, "steps": SELECTION_STEPS,
                   "curve": selection_curve(workdir),
                   "commits": results_files.run_commits(workdir)})
  if not runs:
    raise SystemExit("no finished selection run")
  markdown = render_selection({"runs": runs})
  results_files.write(SELECTION_STUDY, script="benchmarks.fashion_results",
                      command="python -m benchmarks.fashion_results --selection "
                              "--parallel 2",
                      markdown=markdown, results_dir=args.results_dir,
                      table="selection", config=CONFIG_PATH, runs=runs)
  return markdown


def run_workdir(root: str, variant: str, seed: int, steps: int) -> str:
  """The workdir of one run: <root>/steps_<S>/<variant>_seed<k>."""
  return os.path.join(root, f"steps_{steps}", f"{variant}_seed{seed}")


def train_command(variant: str, seed: int, steps: int, workdir: str,
                  eval_every: int = DEFAULT_EVAL_EVERY,
                  data_dir: str = DATA_DIR) -> list[str]:
  """The `python -m train.vae` command of one run (the same command resumes it)."""
  overrides = [f"--config.{field}={vae_results._flag_value(value)}"
               for field, value in VARIANTS[variant].overrides]
  return [sys.executable, "-m", "train.vae", f"--config={CONFIG_PATH}",
          f"--workdir={workdir}", *overrides, f"--config.data.data_dir={data_dir}",
          f"--config.data.num_eval_examples={EVAL_EXAMPLES}",
          f"--config.train.seed={seed}", f"--config.train.num_steps={steps}",
          f"--config.eval.every_steps={eval_every}", "--config.eval.every_epochs=0",
          "--config.train.progress_bar=False"]


def make_jobs(variants: list[str], seeds: list[int]) -> list[tuple[str, int]]:
  """(variant, seed), seed-major (every row's seed 0 first, so a partial sweep already
  compares the rows), the variants of a seed in `PRIORITY` order."""
  ordered = sorted(variants, key=lambda name: PRIORITY.index(name)
                   if name in PRIORITY else len(PRIORITY))
  return [(variant, seed) for seed in seeds for variant in ordered]


def collect(jobs: list[tuple[str, int]], *, root: str, steps: int,
            classifier_params=None) -> list[dict]:
  """The final evaluation, curve and commits of every finished run in `jobs` (with its
  classifier FD if `classifier_params` is given); unfinished runs are left out."""
  runs = []
  for variant, seed in jobs:
    workdir = run_workdir(root, variant, seed, steps)
    record = vae_results.final_eval(workdir, steps)
    if record is None:
      continue
    run = {"variant": variant,
           "fields": {field: value for field, value in VARIANTS[variant].overrides},
           "seed": seed, "workdir": workdir, "step": record["step"],
           ELBO_METRIC: record[ELBO_METRIC], IWAE_METRIC: record[IWAE_METRIC],
           "test_kl": record.get("test_kl"),
           "test_log_likelihood": record.get("test_log_likelihood"),
           "curve": vae_results.elbo_curve(workdir),
           "commits": results_files.run_commits(workdir)}
    if classifier_params is not None:
      run[FD_METRIC] = vae_results.classifier_fd_of_run(workdir, record["step"],
                                                        classifier_params)
    runs.append(run)
  return runs


def summarize(runs: list[dict]) -> list[dict]:
  """Per variant with runs (in `ROWS` order): seeds, mean and sample sd of the test
  ELBO, IWAE-100 and classifier FD (each where every run of the variant has it)."""
  rows = []
  for variant in ROWS:
    chosen = [run for run in runs if run["variant"] == variant]
    if not chosen:
      continue
    row = {"variant": variant, "seeds": sorted(run["seed"] for run in chosen)}
    for metric in (ELBO_METRIC, IWAE_METRIC, FD_METRIC):
      values = [run.get(metric) for run in chosen]
      if all(value is not None for value in values):
        row[f"{metric}_mean"], row[f"{metric}_sd"] = vae_results.mean_and_sd(values)
    rows.append(row)
  return rows


COLUMNS = ((ELBO_METRIC, "test ELBO"), (IWAE_METRIC, "test IWAE-100"),
           (FD_METRIC, f"classifier FD ({FD_NUM_SAMPLES:,} samples)"))


def setting() -> dict:
  """The config's values the caption names (stored in the results file)."""
  from tripjax.configs import fashion_vae_trip  # ml_collections only, no JAX

  config = fashion_vae_trip.get_config()
  return {"latent_dim": config.model.latent_dim,
          "num_components": config.prior.num_components, "rank": config.prior.rank,
          "batch_size": config.train.batch_size}


def caption(steps: int, values: dict) -> str:
  batch_size = values["batch_size"]
  epochs = steps * batch_size / TRAIN_EXAMPLES
  return (f"Fashion-MNIST (54,000 train / 10,000 test binarized images), {CONFIG_PATH} "
          f"(latent {values['latent_dim']}, N = {values['num_components']}, m = "
          f"{values['rank']}), {steps:,} steps of batch {batch_size} "
          f"({epochs:.1f} epochs); mean ± sd over the seeds run so far (of "
          f"{PLANNED_SEEDS} planned; one seed: its value). ELBO and IWAE-100 in nats "
          f"per image on the first {EVAL_EXAMPLES:,} test images (higher is better); "
          f"classifier FD of {FD_NUM_SAMPLES:,} prior samples against the 10,000 test "
          f"images in the features of the Fashion-MNIST classifier (lower is better). "
          f"F = the prior gets no gradient (only the EM refits move it), L = learned.")


def markdown_table(rows: list[dict], steps: int, values: dict,
                   unavailable: tuple[str, ...] = ()) -> str:
  """Every row of `ROWS`: its seeds so far and its cells; a row without runs says
  "not run yet", or "not implemented" for the `unavailable` variants (the checkout
  lacked their config fields); `values`: the config's (`setting()`)."""
  by_variant = {row["variant"]: row for row in rows}
  lines = [caption(steps, values), "",
           "| prior | seeds | " + " | ".join(title for _, title in COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 2) + "|"]
  for variant in ROWS:
    row = by_variant.get(variant)
    label = VARIANTS[variant].label
    if row is None:
      text = "not implemented" if variant in unavailable else "not run yet"
      lines.append(f"| {label} | 0 | " + " | ".join([text] * len(COLUMNS)) + " |")
      continue
    cells = [results_files.mean_sd_cell(row, metric) for metric, _ in COLUMNS]
    lines.append(f"| {label} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def render(results: dict) -> str:
  """The table of a results file (`results_files.write`) from its runs: its .md."""
  if results.get("table") == "selection":
    return render_selection(results)
  return markdown_table(summarize(results["runs"]), results["steps"],
                        results["setting"], tuple(results.get("unavailable", ())))


def write_results_files(runs: list[dict], steps: int, command: str,
                        results_dir: str = results_files.RESULTS_DIR,
                        unavailable: tuple[str, ...] = ()) -> str:
  """Writes results/fashion_mnist.json and .md; returns the markdown. `unavailable`:
  the variants this checkout cannot run (their rows say so)."""
  chosen = [{key: value for key, value in run.items() if key != "workdir"}
            for run in runs]
  values = setting()
  markdown = render({"steps": steps, "setting": values, "runs": chosen,
                     "unavailable": list(unavailable)})
  results_files.write(STUDY, script="benchmarks.fashion_results", command=command,
                      markdown=markdown, results_dir=results_dir, config=CONFIG_PATH,
                      steps=steps, setting=values, unavailable=list(unavailable),
                      eval_examples=EVAL_EXAMPLES,
                      classifier_config=CLASSIFIER_CONFIG,
                      classifier_fd_num_samples=FD_NUM_SAMPLES, runs=chosen)
  return markdown


def regenerate_command(args: argparse.Namespace) -> str:
  """The command that trains and reports this table (the flags that change it; not
  where the files go or how many runs share the machine)."""
  command = "nice -n 10 python -m benchmarks.fashion_results --parallel 2"
  if args.seeds != list(range(PLANNED_SEEDS)):
    command += " --seeds " + " ".join(map(str, args.seeds))
  if args.steps != DEFAULT_STEPS:
    command += f" --steps {args.steps}"
  if args.eval_every != DEFAULT_EVAL_EVERY:
    command += f" --eval-every {args.eval_every}"
  return command


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, nargs="+",
                      default=list(range(PLANNED_SEEDS)))
  parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                      help="train only these (default: every variant this checkout "
                           "has); the table shows every finished run")
  parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
  parser.add_argument("--eval-every", type=int, default=DEFAULT_EVAL_EVERY,
                      help="test ELBO every this many steps (the curves)")
  results_files.add_sweep_arguments(parser, workdir="runs/fashion_results",
                                    workdir_help="root of the run workdirs and curves.png")
  parser.add_argument("--data-dir", default=DATA_DIR,
                      help="the Fashion-MNIST IDX files (pinned: TFDS orders the "
                           "examples differently)")
  parser.add_argument("--classifier-fd", action=argparse.BooleanOptionalAction,
                      default=True, help="add the classifier FD of prior samples")
  parser.add_argument("--classifier-workdir", default="runs/fashion_classifier",
                      help="cached FD classifier (configs/fashion_mnist_classifier.py)")
  parser.add_argument("--selection", action="store_true",
                      help="the validation runs that chose the latent size and the "
                           "length (N(0, I), latent 16 and 32) instead of the table")
  args = parser.parse_args(argv)
  if args.parallel < 1 or args.steps < 1 or args.eval_every < 1:
    parser.error("--parallel, --steps and --eval-every must be positive")
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  if args.selection:
    print(run_selection(args))
    return 0
  all_jobs = make_jobs(list(ROWS), args.seeds)
  if args.train:
    variants = args.variants or [name for name in ROWS if variant_available(name)]
    to_train = [job for job in all_jobs if job[0] in variants]

    def summary(record):
      return (f"test ELBO {record[ELBO_METRIC]:.2f}, "
              f"IWAE-100 {record[IWAE_METRIC]:.2f}")

    vae_results.run_jobs(
        to_train, workdir_of=lambda job: run_workdir(args.workdir, *job, args.steps),
        command_of=lambda job, workdir: train_command(*job, args.steps, workdir,
                                                      args.eval_every, args.data_dir),
        finished=lambda workdir: vae_results.final_eval(workdir, args.steps),
        summary=summary, cache_dir=os.path.join(args.workdir, "jax_cache"),
        parallel=args.parallel)
  classifier_params = None
  if args.classifier_fd:
    from tripjax.configs import fashion_mnist_classifier
    from tripjax.training import classifier
    config = fashion_mnist_classifier.get_config()
    config.data.data_dir = args.data_dir
    classifier_params, _ = classifier.get_or_train(config, args.classifier_workdir)
  runs = collect(all_jobs, root=args.workdir, steps=args.steps,
                 classifier_params=classifier_params)
  unavailable = tuple(name for name in ROWS if not variant_available(name))
  table = write_results_files(runs, args.steps, regenerate_command(args),
                              args.results_dir, unavailable)
  print(table)
  curves = vae_results.mean_curves(runs, list(ROWS))
  if curves:
    os.makedirs(args.workdir, exist_ok=True)
    vae_results.plot_curves(
        curves, os.path.join(args.workdir, "curves.png"),
        f"Fashion-MNIST, test ELBO during training (first {EVAL_EXAMPLES:,} test "
        f"images)", labels={name: variant.label for name, variant in VARIANTS.items()},
        xlabel="training step",
        ylabel="test ELBO (nats per image)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
