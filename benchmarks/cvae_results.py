"""Regenerates the conditional VAE results table on the offline digits (issues 9, 21).

  python -m benchmarks.cvae_results                       # 4 models x 2 x 3 seeds
  python -m benchmarks.cvae_results --seeds 0 --epochs 1 --workdir /tmp/cvae_smoke \
      --extra eval.violation_num_samples=200              # a quick smoke check
  python -m benchmarks.cvae_results --config configs/celeba_cvae_trip.py \
      --data-dir ~/tensorflow_datasets --classifier-workdir runs/attr_classifier \
      --workdir runs/cvae_celeba                          # the same table on CelebA

With `--config configs/celeba_cvae_trip.py` the runs are that config's (CelebA 64x64,
the 14 attributes of `tripjax.data.CELEB_A_CONDITIONS`, latent 100), the violations are
read by the CelebA attribute classifier, which must be trained first (`python -m
train.train_classifier --config celeba_attribute_classifier --workdir DIR
--config.data.data_dir=...`; `--classifier-workdir DIR`), and the table goes to
`<results-dir>/cvae_celeba.{json,md}`. The rest of this docstring describes the digits.

CVAE-TRIP (`model.kind=trip`: one tensor ring over the latents z and the attributes
y, trained by eq. 14) against the textbook CVAE (`cvae`: q(z|x, y), p(x|z, y), N(0, I),
a learned "unknown" value for a hidden label), the same with the hidden labels imputed
by a predictor of y from x trained on the visible ones (`cvae_imputed`), and
decoder-only conditioning (`concat`: q(z|x), N(0, I) and a decoder of [z, one-hot y]),
each with 0% and 50% of the training attribute labels hidden
(`data.hide_attribute_fraction`), over seeds.
Every (model, hidden fraction, seed) is one full `python -m train.cvae --config
configs/digits_cvae_trip.py` run (the quickstart: latent 16, TRIP N = 10, m = 20,
batch 64) with `--config.model.kind`, `--config.data.hide_attribute_fraction`,
`--config.train.seed`, `--config.train.num_epochs` and `--config.eval.
classifier_workdir` overridden (plus `--extra` overrides), in its own workdir
`<workdir>/epochs_<E>/<model>_hidden<P>_seed<S>` (P in percent). A run whose final
evaluation (the one with the condition violation rates) is in its metrics.jsonl is
skipped; an interrupted one resumes from its last checkpoint, so running the same
command again finishes the table. Use a separate --workdir with --extra: a workdir
keeps the config of its first run.

Every run scores its samples with the same digit classifier,
`<workdir>/classifier` (`--classifier-workdir`), trained there first (once, by
`python -m train.train_classifier`, before any run starts, so that parallel runs do
not race to train it).

Output, printed and written under `--workdir`: results.md, a markdown table of
mean ± sample sd over seeds of, per (model, hidden fraction),

* the condition violation rate after the last step (`tripjax.training.cvae.
  violation_metrics`; lower is better): the share of requested attributes that the
  classifier reads differently on images generated for random requests, mean over
  the attributes digit, even and at_least_5, for requests of a single attribute and
  for random subsets of 2-3 attributes;
* the diversity of what is not requested (`tripjax.metrics.condition_violation.
  unrequested_diversity`; lower is better): per distinct request, the total variation
  distance between the unrequested attributes of the generated images that satisfy it
  and of the real test digits that satisfy it (both read by the classifier), mean over
  the requests that at least 30 real test digits satisfy and under which they vary
  (how many: in the caption);
* the test bound on log p(x | y), comparable between the models (every test label
  observed), and CVAE-TRIP's test ELBO on log p(x) (y summed out of the prior);
* the classifier's accuracy on the real test digits, the metric's own error (the same
  for every run: one classifier);

and results.json (every run's final numbers, per-attribute rates included); and the
committed results files README's table is, `<results-dir>/cvae_digits.{json,md}`
(`benchmarks.results_files`).

Before starting each run the script waits while /tmp/tripjax_quiet exists (someone is
benchmarking on this machine). With `--parallel` > 1 every run uses one CPU device.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import signal
import sys

from benchmarks import results_files
from benchmarks import vae_results
from benchmarks.vae_results import mean_and_sd
from tripjax import data as data_lib
from tripjax.configs import digits_classifier
from tripjax.training import config_files

CONFIG_PATH = "configs/digits_cvae_trip.py"
# The attribute classifier of CelebA (`tripjax.metrics.attribute_classifier`).
ATTRIBUTE_CLASSIFIER_FILENAMES = ("attribute_classifier.json",
                                  "attribute_classifier.msgpack")
CACHE_DIRNAME = "jax_cache"
CLASSIFIER_DIRNAME = "classifier"
# What `tripjax.metrics.classifier_fd.save_classifier` writes (read here without JAX).
CLASSIFIER_METADATA_FILENAME = "classifier.json"
CLASSIFIER_WEIGHTS_FILENAME = "classifier.msgpack"
MODELS = {"trip": "CVAE-TRIP", "cvae": "textbook CVAE",
          "cvae_imputed": "textbook CVAE, hidden labels imputed",
          "concat": "decoder-only conditioning (concat)"}
HIDDEN_FRACTIONS = (0.0, 0.5)

# The final evaluation record's fields (`tripjax.training.cvae`; eval.split = test).
VIOLATION_SINGLE = "violation_single_mean"
VIOLATION_SUBSET = "violation_subset_mean"
BOUND_METRIC = "test_bound_x_given_y"
ELBO_METRIC = "test_elbo"  # CVAE-TRIP only
DIVERSITY_SINGLE = "diversity_single_tv"
DIVERSITY_SUBSET = "diversity_subset_tv"
ACCURACY_METRIC = "classifier_accuracy"
# The run fields the table summarizes (mean and sd over seeds), with their headers.
TABLE_METRICS = (
    (VIOLATION_SINGLE, "violation rate, single attributes (%)"),
    (VIOLATION_SUBSET, "violation rate, subsets of 2-3 (%)"),
    (DIVERSITY_SINGLE, "diversity TV, single attributes"),
    (DIVERSITY_SUBSET, "diversity TV, subsets of 2-3"),
    (BOUND_METRIC, r"test bound log p(x \| y)"),  # "\|": not a cell border
    (ELBO_METRIC, "test ELBO log p(x)"),
    (ACCURACY_METRIC, "classifier accuracy on real test digits, mean of attributes (%)"),
)  # ("digits" as the digits say it; `_columns` names another dataset's examples)
PERCENT_METRICS = (VIOLATION_SINGLE, VIOLATION_SUBSET, ACCURACY_METRIC)
# Every field of the final record kept in results.json.
KEPT_PREFIXES = ("test_", "violation_", "diversity_", "classifier_accuracy")

Job = tuple  # (model, hidden fraction, seed)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """How the table names a dataset (`DATASETS`, by `config.data.name`)."""
  study: str  # its results files: <results-dir>/<study>.{json,md}
  description: str  # what the caption says the data are
  noun: str  # one example: "digit", "image"
  classifier: str  # what reads the attributes
  constant_example: str  # a request under which nothing is left to vary, or ""


DATASETS = {
    "digits": Dataset(
        "cvae_digits", "the offline digits (4,000 train / 500 test binarized MNIST "
        "digits; attributes digit, even, at_least_5)", "digit", "digit classifier",
        "digit=3 leaves nothing to vary"),
    "celeb_a": Dataset(
        "cvae_celeba", "CelebA 64x64 (TFDS's splits; the 14 attributes of "
        "tripjax.data.CELEB_A_CONDITIONS)", "image", "attribute classifier", ""),
}


@functools.lru_cache(maxsize=None)
def _config(config_path: str):
  return config_files.load_config(config_path)


def dataset_of(config_path: str) -> Dataset:
  """The `Dataset` of a CVAE config file.

  Raises:
    ValueError: not a CVAE config, or a dataset without a table here.
  """
  config = _config(config_path)
  if config.get("task") != "cvae":
    raise ValueError(f"{config_path} is not a CVAE config (task = "
                     f"{config.get('task')!r}); use one for python -m train.cvae.")
  name = config.data.name
  if name not in DATASETS:
    raise ValueError(f"{config_path}: data.name = {name!r} has no table here; "
                     f"choose a config of {', '.join(DATASETS)}.")
  return DATASETS[name]


def default_epochs(config_path: str = CONFIG_PATH) -> int:
  return int(_config(config_path).train.num_epochs)


def hidden_token(fraction: float) -> str:
  """0.5 -> "50": the hidden share of labels in percent, for workdir names."""
  return f"{fraction * 100:g}"


def hidden_label(fraction: float) -> str:
  return f"{hidden_token(fraction)}%"


def run_workdir(root: str, model: str, hidden: float, seed: int, epochs: int) -> str:
  """The workdir of one run: <root>/epochs_<E>/<model>_hidden<P>_seed<S>."""
  return os.path.join(root, f"epochs_{epochs}",
                      f"{model}_hidden{hidden_token(hidden)}_seed{seed}")


def classifier_workdir(root: str) -> str:
  """The classifier every run of a table shares: <root>/classifier."""
  return os.path.join(root, CLASSIFIER_DIRNAME)


def final_step(epochs: int, config_path: str = CONFIG_PATH) -> int | None:
  """The last step of an `epochs`-epoch run of the config on the digits (whose split
  sizes are known without reading the data); None for another dataset."""
  config = _config(config_path)
  if config.data.name != "digits":
    return None
  return epochs * (data_lib.DIGITS_SPLIT_SIZES["train"] // config.train.batch_size)


def _override(field: str) -> str:
  """"eval.x=1" or "--config.eval.x=1" -> "--config.eval.x=1"."""
  field = field.removeprefix("--").removeprefix("config.")
  if "=" not in field:
    raise ValueError(f"{field!r}: write extra overrides as FIELD=VALUE.")
  return f"--config.{field}"


def train_command(model: str, hidden: float, seed: int, epochs: int, workdir: str,
                  classifier_dir: str, extra: tuple[str, ...] = (),
                  config_path: str = CONFIG_PATH) -> list[str]:
  """The `python -m train.cvae` command of one run (the same command resumes it)."""
  if model not in MODELS:
    raise ValueError(f"Unknown model {model!r}; choose from {', '.join(MODELS)}.")
  return [sys.executable, "-m", "train.cvae", f"--config={config_path}",
          f"--workdir={workdir}", f"--config.model.kind={model}",
          f"--config.data.hide_attribute_fraction={float(hidden)!r}",
          f"--config.train.seed={seed}", f"--config.train.num_epochs={epochs}",
          f"--config.eval.classifier_workdir={classifier_dir}",
          *(_override(field) for field in extra), "--config.train.progress_bar=False"]


def classifier_command(classifier_dir: str) -> list[str]:
  """Trains the shared classifier with the stock config (the one every run loads:
  any override would make the runs retrain it)."""
  return [sys.executable, "-m", "train.train_classifier", f"--workdir={classifier_dir}"]


def classifier_ready(classifier_dir: str) -> dict | None:
  """The metadata of the cached classifier if it has the config the runs load."""
  path = os.path.join(classifier_dir, CLASSIFIER_METADATA_FILENAME)
  if not (os.path.exists(path) and os.path.exists(
      os.path.join(classifier_dir, CLASSIFIER_WEIGHTS_FILENAME))):
    return None
  with open(path) as file:
    metadata = json.load(file)
  wanted = json.loads(json.dumps(digits_classifier.get_config().to_dict()))
  return metadata if metadata.get("config") == wanted else None


def _read_records(workdir: str) -> list[dict]:
  path = os.path.join(workdir, vae_results.METRICS_FILENAME)
  if not os.path.exists(path):
    return []
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


def final_eval(workdir: str) -> dict | None:
  """The run's evaluation record after its last step (the only one with violation
  rates), or None while the run is unfinished."""
  for record in reversed(_read_records(workdir)):
    if record.get("split") == "eval" and VIOLATION_SINGLE in record:
      return record
  return None


def _run_config(workdir: str) -> dict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return {}
  with open(path) as file:
    return json.load(file)


def summary_line(record: dict) -> str:
  """The done line of a run; its bound on the run's `eval.split` (e.g. validation
  with `--extra eval.split=validation`)."""
  bounds = [key for key in record if key.endswith("_bound_x_given_y")]
  bound = (f", {bounds[0][:-len('_bound_x_given_y')]} bound log p(x|y) "
           f"{record[bounds[0]]:.2f}" if bounds else "")
  return (f"violation rate single {record[VIOLATION_SINGLE]:.3f}, subsets "
          f"{record[VIOLATION_SUBSET]:.3f}{bound}")


def attribute_classifier_ready(classifier_dir: str) -> bool:
  """Whether CelebA's attribute classifier has been trained in `classifier_dir`."""
  return all(os.path.exists(os.path.join(classifier_dir, name))
             for name in ATTRIBUTE_CLASSIFIER_FILENAMES)


def run_all(jobs: list[Job], *, root: str, epochs: int, parallel: int,
            classifier_dir: str, extra: tuple[str, ...] = (),
            quiet_file: str = vae_results.QUIET_FILE, poll_seconds: float = 2.0,
            config_path: str = CONFIG_PATH) -> None:
  """Trains the shared digit classifier if missing (CelebA's must exist), then every
  unfinished run."""
  cache_dir = os.path.join(root, CACHE_DIRNAME)
  if _config(config_path).data.name == "digits":
    vae_results.run_jobs(
        [("classifier",)], workdir_of=lambda job: classifier_dir,
        command_of=lambda job, workdir: classifier_command(workdir),
        finished=classifier_ready,
        summary=lambda metadata: f"test accuracy {metadata['test_accuracy']:.4f}",
        cache_dir=cache_dir, parallel=1, quiet_file=quiet_file,
        poll_seconds=poll_seconds)
  elif not attribute_classifier_ready(classifier_dir):
    raise FileNotFoundError(
        f"no attribute classifier in {classifier_dir}: train it first with python -m "
        f"train.train_classifier --config celeba_attribute_classifier --workdir "
        f"{classifier_dir} --config.data.data_dir=... (or pass --classifier-workdir).")
  vae_results.run_jobs(
      jobs, workdir_of=lambda job: run_workdir(root, *job, epochs),
      command_of=lambda job, workdir: train_command(*job, epochs, workdir,
                                                    classifier_dir, extra, config_path),
      finished=final_eval, summary=summary_line, cache_dir=cache_dir, parallel=parallel,
      quiet_file=quiet_file, poll_seconds=poll_seconds)


def collect(jobs: list[Job], *, root: str, epochs: int) -> list[dict]:
  """The final evaluation of every finished run in `jobs` (unfinished ones left out)."""
  runs = []
  for model, hidden, seed in jobs:
    workdir = run_workdir(root, model, hidden, seed, epochs)
    record = final_eval(workdir)
    if record is None:
      continue
    run = {"model": model, "hidden": hidden,
           "fields": {"model.kind": model, "data.hide_attribute_fraction": hidden},
           "seed": seed, "workdir": workdir, "step": record["step"],
           "epoch": record.get("epoch"), "commits": results_files.run_commits(workdir)}
    run.update({name: value for name, value in record.items()
                if name.startswith(KEPT_PREFIXES)})
    evaluation = _run_config(workdir).get("eval", {})
    for field in ("violation_num_samples", "violation_subset_sizes"):
      if field in evaluation:
        run[field] = evaluation[field]
    runs.append(run)
  return runs


def make_jobs(models: list[str], hidden_fractions: list[float],
              seeds: list[int]) -> list[Job]:
  """Seed-major (every row's seed 0 first, so a partial sweep already compares rows)."""
  jobs = [(model, hidden, seed) for seed in seeds for hidden in hidden_fractions
          for model in models]
  return list(dict.fromkeys(jobs))


def summarize(runs: list[dict], models: list[str] | None = None,
              hidden_fractions: list[float] | None = None) -> list[dict]:
  """One row per (hidden fraction, model) with runs, hidden-major (the two models
  side by side): seeds and the mean and sd of every `TABLE_METRICS` field that each of
  its runs has, and of every per-attribute classifier accuracy."""
  models = list(MODELS) if models is None else models
  if hidden_fractions is None:
    hidden_fractions = sorted({run["hidden"] for run in runs})
  rows = []
  for hidden in hidden_fractions:
    for model in models:
      chosen = [run for run in runs if run["model"] == model and run["hidden"] == hidden]
      if not chosen:
        continue
      row = {"model": model, "label": MODELS[model], "hidden": hidden,
             "seeds": sorted(run["seed"] for run in chosen)}
      metrics = [metric for metric, _ in TABLE_METRICS] + sorted(
          {name for run in chosen for name in run
           if name.startswith(ACCURACY_METRIC + "_")})
      for metric in metrics:
        values = [run.get(metric) for run in chosen]
        if all(isinstance(value, (int, float)) for value in values):
          row[f"{metric}_mean"], row[f"{metric}_sd"] = mean_and_sd(values)
      rows.append(row)
  return rows


def _cell(row: dict, metric: str) -> str:
  if metric in PERCENT_METRICS:
    return results_files.mean_sd_cell(row, metric, scale=100, decimals=1)
  return results_files.mean_sd_cell(row, metric)


def _classifier_text(runs: list[dict], classifier_dir: str) -> str:
  names = list(dict.fromkeys(name for run in runs for name in run  # attribute order
                             if name.startswith(ACCURACY_METRIC + "_")))
  parts = []
  for name in names:
    values = [run[name] for run in runs if name in run]
    parts.append(f"{name[len(ACCURACY_METRIC) + 1:]} "
                 f"{100 * mean_and_sd(values)[0]:.1f}%")
  accuracy = (f", correct on the real test digits for {', '.join(parts)}"
              if parts else "")
  return (f"Violations are read by one digit classifier ({classifier_dir}, shared by "
          f"every run){accuracy}: its error bounds what the rates resolve.")


def _diversity_text(runs: list[dict]) -> str:
  counts = []
  for kind in ("single", "subset"):
    values = sorted({int(run[f"diversity_{kind}_requests"]) for run in runs
                     if isinstance(run.get(f"diversity_{kind}_requests"), (int, float))})
    if values:
      span = (f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}")
      counts.append(f"{span} {'single-attribute' if kind == 'single' else 'subset'}")
  scored = f" ({' and '.join(counts)} requests per run)" if counts else ""
  floors = []
  for kind in ("single", "subset"):
    values = [run[f"diversity_{kind}_tv_floor"] for run in runs
              if isinstance(run.get(f"diversity_{kind}_tv_floor"), (int, float))]
    if values:
      floors.append(f"{mean_and_sd(values)[0]:.2f} ({kind})")
  floor = (f"; a model that draws exactly the real spread, with as many satisfying "
           f"digits, scores about {' and '.join(floors)} by chance alone"
           if floors else "")
  return ("Diversity TV (lower is better; 0: what is not requested varies as in the "
          "real digits): per distinct request, the total variation distance between "
          "the unrequested attributes of the generated digits that satisfy it and of "
          "the real test digits that satisfy it (both read by the classifier), mean "
          "over the requests that at least 30 real test digits satisfy (with their "
          "unrequested attributes not all alike: digit=3 leaves nothing to vary) and "
          f"some generated digit satisfies{scored}{floor}. ")


def _for_dataset(text: str, dataset: Dataset) -> str:
  """Text written for the digits, said of `dataset`'s examples."""
  if dataset.noun == "digit":
    return text
  text = text.replace("digit classifier", dataset.classifier)
  text = text.replace(": digit=3 leaves nothing to vary", (
      f": {dataset.constant_example}" if dataset.constant_example else ""))
  return re.sub(r"\bdigit(s?)\b", dataset.noun + r"\1", text)


def markdown_table(rows: list[dict], runs: list[dict], epochs: int,
                   classifier_dir: str, extra: tuple[str, ...] = (),
                   config_path: str = CONFIG_PATH,
                   dataset: Dataset = DATASETS["digits"]) -> str:
  """The results as markdown: a caption and one row per (hidden fraction, model)."""
  requests = sorted({run.get("violation_num_samples") for run in runs
                     if run.get("violation_num_samples") is not None})
  sizes = sorted({tuple(run["violation_subset_sizes"]) for run in runs
                  if run.get("violation_subset_sizes")})
  request_text = (f"{'/'.join(f'{count:,}' for count in requests)} random requests "
                  "per kind" if requests else "random requests")
  size_text = (" or ".join("-".join(map(str, size)) for size in sizes)
               if sizes else "2-3")
  columns = [(metric, _for_dataset(title.replace("2-3", size_text), dataset))
             for metric, title in TABLE_METRICS]
  steps = sorted({run["step"] for run in runs})
  if not steps and final_step(epochs, config_path) is not None:
    steps = [final_step(epochs, config_path)]
  step_text = (f" ({'/'.join(f'{step:,}' for step in steps)} steps)" if steps else "")
  caption = (
      f"Conditional VAEs on {dataset.description}, {config_path}"
      + (f" with {' '.join(_override(field) for field in extra)}" if extra else "")
      + f", {epochs} epoch{'s' if epochs != 1 else ''}{step_text}; mean ± sd over "
      f"seeds. Hidden labels: the share of training attribute labels hidden. "
      f"Violation rate (lower is better): the share of requested attributes that "
      f"the classifier reads differently on the images generated for {request_text} "
      f"(one attribute; a random subset of {size_text}), mean over the attributes. "
      + _for_dataset(
          "Test bounds in nats per digit (higher is better), every test label "
          "observed: the bound on log p(x | y) compares the models; the ELBO on "
          "log p(x) sums y out of CVAE-TRIP's prior (n/a for the baselines). "
          + _diversity_text(runs), dataset)
      + _for_dataset(_classifier_text(runs, classifier_dir), dataset))
  lines = [caption, "",
           "| model | hidden labels | seeds | "
           + " | ".join(title for _, title in columns) + " |",
           "|---" * (len(columns) + 3) + "|"]
  for row in rows:
    lines.append(f"| {row['label']} | {hidden_label(row['hidden'])} | "
                 f"{len(row['seeds'])} | "
                 + " | ".join(_cell(row, metric) for metric, _ in columns) + " |")
  return "\n".join(lines) + "\n"


STUDY = DATASETS["digits"].study  # results/cvae_digits.json and .md


def render(results: dict) -> str:
  """The table of a results file (`results_files.write`) from its runs: its .md."""
  runs = results["runs"]
  rows = summarize(runs, results["models"], results["hidden_fractions"])
  return markdown_table(rows, runs, results["epochs"], results["classifier_workdir"],
                        tuple(results["extra"]), results.get("config", CONFIG_PATH),
                        DATASETS[results.get("dataset", "digits")])


def write_results_files(runs: list[dict], *, epochs: int, models: list[str],
                        hidden_fractions: list[float], classifier_dir: str,
                        extra: tuple[str, ...], command: str,
                        results_dir: str = results_files.RESULTS_DIR,
                        config_path: str = CONFIG_PATH) -> str:
  """Writes <results_dir>/<the dataset's study>.json and .md (results/cvae_digits.*
  for the digits); returns the markdown."""
  chosen = [{key: value for key, value in run.items() if key != "workdir"}
            for run in runs]
  dataset = _config(config_path).data.name
  fields = {"epochs": epochs, "models": list(models),
            "hidden_fractions": list(hidden_fractions),
            "classifier_workdir": classifier_dir, "extra": list(extra),
            "config": config_path, "dataset": dataset}
  markdown = render({**fields, "runs": chosen})
  results_files.write(dataset_of(config_path).study, script="benchmarks.cvae_results",
                      command=command, markdown=markdown, results_dir=results_dir,
                      final_step=final_step(epochs, config_path), **fields,
                      runs=chosen)
  return markdown


def _fraction(text: str) -> float:
  value = float(text)
  if not 0.0 <= value <= 1.0:
    raise argparse.ArgumentTypeError(f"{text}: a hidden fraction is in [0, 1].")
  return value


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  parser.add_argument("--hidden", type=_fraction, nargs="+",
                      default=list(HIDDEN_FRACTIONS),
                      help="shares of the training labels hidden (rows)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--config", default=CONFIG_PATH,
                      help="the CVAE config of every run: the digits quickstart, or "
                           "configs/celeba_cvae_trip.py (needs --data-dir and a trained "
                           "attribute classifier)")
  parser.add_argument("--data-dir", default=None,
                      help="TFDS data_dir of the runs (CelebA)")
  parser.add_argument("--epochs", type=int, default=None,
                      help="training epochs per run (the config's by default)")
  results_files.add_sweep_arguments(
      parser, workdir="runs/cvae_results",
      workdir_help="root of the run workdirs, the classifier and the outputs")
  parser.add_argument("--classifier-workdir",
                      help="the classifier every run uses (default: <workdir>/"
                           f"{CLASSIFIER_DIRNAME}; trained there first if missing)")
  parser.add_argument("--extra", nargs="+", default=[], metavar="FIELD=VALUE",
                      help="more config overrides for every run, e.g. "
                           "eval.violation_num_samples=200 (use a fresh --workdir)")
  args = parser.parse_args(argv)
  try:
    dataset_of(args.config)
    if args.epochs is None:
      args.epochs = default_epochs(args.config)
  except (ValueError, FileNotFoundError) as error:
    parser.error(str(error))
  if args.parallel < 1 or args.epochs < 1:
    parser.error("--parallel and --epochs must be positive")
  try:
    extra = tuple(_override(field).removeprefix("--config.") for field in args.extra)
  except ValueError as error:
    parser.error(str(error))
  if args.data_dir is not None:
    extra += (f"data.data_dir={args.data_dir}",)
  classifier_dir = args.classifier_workdir or classifier_workdir(args.workdir)
  jobs = make_jobs(args.models, args.hidden, args.seeds)
  # `kill` stops the runs too (they resume next time), as Ctrl-C does.
  signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
  if args.train:
    try:
      run_all(jobs, root=args.workdir, epochs=args.epochs, parallel=args.parallel,
              classifier_dir=classifier_dir, extra=extra, config_path=args.config)
    except FileNotFoundError as error:
      parser.error(str(error))
  runs = collect(jobs, root=args.workdir, epochs=args.epochs)
  rows = summarize(runs, args.models, args.hidden)
  table = write_results_files(
      runs, epochs=args.epochs, models=args.models, hidden_fractions=args.hidden,
      classifier_dir=classifier_dir, extra=extra,
      command=results_files.command_line("benchmarks.cvae_results", argv),
      results_dir=args.results_dir,
      config_path=args.config)
  print(table)
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "results.md"), "w") as file:
    file.write(table)
  with open(os.path.join(args.workdir, "results.json"), "w") as file:
    json.dump({"config": args.config, "epochs": args.epochs,
               "final_step": final_step(args.epochs, args.config), "seeds": args.seeds,
               "models": args.models, "hidden_fractions": args.hidden,
               "extra": list(extra), "classifier_workdir": classifier_dir,
               "rows": rows, "runs": runs}, file, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
