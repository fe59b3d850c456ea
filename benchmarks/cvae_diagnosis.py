"""Where CVAE-TRIP's digit violations come from (issue 21, item 3), on finished runs.

  python -m benchmarks.cvae_diagnosis        # the runs of benchmarks.cvae_ablation

For each run (a CVAE-TRIP checkpoint of `benchmarks.cvae_ablation`, trained with its
attributes fully visible and evaluated on the validation split), the share of digits
that the shared digit classifier (or the model) gets wrong at each stage from a real
digit to a generated one, for the attribute `digit` (10 values):

* `classifier`: the classifier on the real validation digits (the metric's floor);
* `reconstruction`: the classifier on the decoded posterior means of those digits
  (the decoder: does z keep the digit?);
* `prior_on_validation` / `prior_on_train`: the prior's own classifier, argmax_k
  p(digit = k | z) with z the posterior mean, on the validation digits and on the
  first as many training digits (does the ring separate the digits in z, and does that
  generalize?);
* `samples`: the classifier on images decoded from z ~ p(z | digit = k), the same
  number for each k (what the violation rate measures for digit requests).

Output: `<results-dir>/cvae_digits_diagnosis.{json,md}`, mean ± sd over each
variant's seeds. Runs in seconds a checkpoint; nothing is trained.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import cvae_ablation
from benchmarks import cvae_results
from benchmarks import results_files
from benchmarks.vae_results import mean_and_sd

STUDY = "cvae_digits_diagnosis"
VARIANTS = ("epochs_40", "epochs_40_weight_4", "epochs_40_weight_16")
SEEDS = (0, 1, 2)
SAMPLES_PER_DIGIT = 100
STAGES = (("classifier", "classifier on real digits"),
          ("reconstruction", "classifier on decoded posterior means"),
          ("prior_on_train", "prior's p(digit \\| z) on training digits"),
          ("prior_on_validation", "prior's p(digit \\| z) on validation digits"),
          ("samples", "classifier on samples given the digit"))


def digit_errors(workdir: str, classifier_dir: str, batch_size: int = 250
                 ) -> dict[str, float]:
  """The error rates (module docstring) of the digit attribute of one run."""
  import jax
  import jax.numpy as jnp

  from tripjax import data as data_lib
  from tripjax.metrics import condition_violation
  from tripjax.training import cvae
  from tripjax.training import rng as rng_lib

  sampler = cvae.load_sampler(workdir)
  model, params = sampler.model, sampler.params
  predictor = condition_violation.load_attribute_predictor(
      "digits", classifier_dir, batch_size)
  num_values = model.specs[0].num_values
  nothing = np.full((1, len(model.specs)), np.nan, np.float32)
  posterior = jax.jit(model.posterior)
  decode = jax.jit(model.decode_mean)

  @jax.jit
  def log_joint(prior_params, z, attributes):
    return model.variant.joint_log_prob_fn(prior_params, attributes)(z)[1]

  def prior_digits(z):
    """argmax_k log p(y_obs = (k, ?, ?) | z) over the digit values, (n,)."""
    scores = []
    for value in range(num_values):
      request = np.repeat(nothing, len(z), axis=0)
      request[:, 0] = value
      scores.append(np.asarray(log_joint(params["prior"], z, jnp.asarray(request))))
    return np.argmax(np.stack(scores, axis=1), axis=1)

  validation = data_lib.load_dataset("digits", "validation")
  grey, labels = data_lib.load_dataset("digits", "validation", binarize=False).read(
      np.arange(len(validation)))
  truth = data_lib.attributes_from_labels("digits", labels)[:, 0]
  means = np.asarray(posterior(params, jnp.asarray(validation.images))[0])
  reconstructions = np.asarray(decode(params, jnp.asarray(means), jnp.asarray(
      np.repeat(nothing, len(means), axis=0))))
  train_images, train_labels = data_lib.load_dataset("digits", "train").read(
      np.arange(len(validation)))
  train_truth = data_lib.attributes_from_labels("digits", train_labels)[:, 0]
  train_means = np.asarray(posterior(params, jnp.asarray(train_images))[0])
  requests = np.repeat(nothing, num_values * SAMPLES_PER_DIGIT, axis=0)
  requests[:, 0] = np.repeat(np.arange(num_values), SAMPLES_PER_DIGIT)
  samples = cvae.sample_images_in_chunks(
      model, params, rng_lib.RandomStreams(0).key("sample_metric"), requests,
      batch_size)
  return {
      "classifier": float(np.mean(predictor.predict(grey)[:, 0] != truth)),
      "reconstruction": float(np.mean(
          predictor.predict(reconstructions)[:, 0] != truth)),
      "prior_on_train": float(np.mean(prior_digits(train_means) != train_truth)),
      "prior_on_validation": float(np.mean(prior_digits(means) != truth)),
      "samples": float(np.mean(predictor.predict(samples)[:, 0] != requests[:, 0])),
  }


def render(results: dict) -> str:
  """The markdown table of a results file from its runs."""
  lines = [
      "Where CVAE-TRIP's digit violations come from: the share of digits read wrong "
      "at each stage, for the attribute digit, on runs of `benchmarks.cvae_ablation` "
      "(0% hidden labels, 40 epochs, the validation split); mean ± sd over seeds. "
      "The classifier is the one that scores every violation rate; the prior's "
      "classifier is argmax_k p(digit = k | z) of the trained ring at the posterior "
      f"mean of each digit; samples: {SAMPLES_PER_DIGIT} images decoded from "
      "z ~ p(z | digit = k) for each k.",
      "",
      "| attribute weight w | seeds | " + " | ".join(
          f"{title} (%)" for _, title in STAGES) + " |",
      "|---" * (len(STAGES) + 2) + "|"]
  for variant in results["variants"]:
    chosen = [run for run in results["runs"] if run["variant"] == variant]
    if not chosen:
      continue
    row: dict = {"seeds": sorted(run["seed"] for run in chosen)}
    for stage, _ in STAGES:
      row[f"{stage}_mean"], row[f"{stage}_sd"] = mean_and_sd(
          [run[stage] for run in chosen])
    weight = cvae_ablation.VARIANTS_BY_SLUG[variant].fields()[
        "train.attribute_weight"]
    lines.append(f"| {float(weight):g} | {len(chosen)} | " + " | ".join(
        results_files.mean_sd_cell(row, stage, scale=100, decimals=1)
        for stage, _ in STAGES) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default="runs/cvae_ablation",
                      help="the root of benchmarks.cvae_ablation's runs")
  parser.add_argument("--classifier-workdir", default="runs/cvae_results/classifier")
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                      choices=list(cvae_ablation.VARIANTS_BY_SLUG))
  parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
  parser.add_argument("--results-dir", default=results_files.RESULTS_DIR)
  args = parser.parse_args(argv)
  if cvae_results.classifier_ready(args.classifier_workdir) is None:
    parser.error(f"no digit classifier in {args.classifier_workdir} (--classifier-"
                 "workdir: the one the runs were scored with)")
  runs = []
  for variant in args.variants:
    for seed in args.seeds:
      workdir = cvae_ablation.run_workdir(args.workdir, (variant, 0.0, seed))
      if cvae_results.final_eval(workdir) is None:
        print(f"{workdir}: not finished, left out")
        continue
      errors = digit_errors(workdir, args.classifier_workdir)
      print(f"{variant} seed {seed}: " + ", ".join(
          f"{stage} {100 * value:.1f}%" for stage, value in errors.items()))
      runs.append({"variant": variant,
                   "fields": cvae_ablation.VARIANTS_BY_SLUG[variant].fields(),
                   "seed": seed, **errors,
                   "commits": results_files.run_commits(workdir)})
  if not runs:
    parser.error(f"no finished run of {', '.join(args.variants)} under "
                 f"{args.workdir}; nothing written")
  results = {"variants": args.variants, "runs": runs}
  markdown = render(results)
  results_files.write(STUDY, script="benchmarks.cvae_diagnosis",
                      command=results_files.command_line(
                          "benchmarks.cvae_diagnosis", argv),
                      markdown=markdown, runs=runs, results_dir=args.results_dir,
                      variants=args.variants,
                      classifier_workdir=args.classifier_workdir)
  print(markdown)
  return 0


if __name__ == "__main__":
  sys.exit(main())
