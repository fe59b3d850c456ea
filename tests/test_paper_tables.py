"""benchmarks.paper_tables --smoke (issue 19, item 7): every cell of Table 1 (and the
CIFAR-10 cell of Table 2) trains on TFDS mock data, is scored, and lands in a table of
the paper's shape; a rerun trains nothing again.

Table 1's 15 cells train two at a time in worker processes (the smoke's default
`--jobs 2`), Table 2's one cell in this process, so both paths run.
"""
import json
import math
import os

import pytest

from benchmarks import paper_tables



@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("paper"))
  assert paper_tables.main(["--smoke", "--table", "1", "--workdir", root]) == 0
  assert paper_tables.main(["--smoke", "--table", "2", "--workdir", root]) == 0
  return root


def _results(root, table):
  path = os.path.join(root, f"table{table}_smoke", "results", f"paper_table{table}.json")
  with open(path) as file:
    return json.load(file)


def test_the_cells_of_table_1_run_and_are_scored(smoke_root):
  results = _results(smoke_root, 1)
  runs = {(run["block"], run["column"]): run for run in results["runs"]}
  expected = {(cell.block.label, cell.column.label)
              for cell in paper_tables.cells(1, flows=False)}
  assert len(expected) == 15 and set(runs) == expected
  for (block, column), run in runs.items():
    assert run["steps"] == paper_tables.SMOKE_STEPS
    assert math.isfinite(run["fid"]) and run["fid"] >= 0
    assert run["fields"]["prior.kind"] == {"N(0, I)": "normal", "GMM F": "full_gmm",
                                           "GMM L": "full_gmm"}.get(column, "trip")
    assert run["fields"]["prior.learnable"] == column.endswith("L")
    if block == "VAE":  # (IWAE-k >= ELBO only in expectation: other draws)
      assert math.isfinite(run["elbo"]) and math.isfinite(run["iwae"])
  markdown = results["markdown"]
  assert markdown.startswith("**SMOKE RUN") and "mean nothing" in markdown
  assert paper_tables.render(results) == markdown
  # Our number beside the paper's in every cell: TRIP L's VAE FID is 83.54.
  vae_row = next(line for line in markdown.splitlines() if line.startswith("| FID | VAE"))
  assert vae_row.endswith(f"{runs[('VAE', 'TRIP L')]['fid']:.2f} / 83.54 |")
  assert "not run" not in markdown
  # The header and 5 rows: FID of the 3 blocks, the VAE's ELBO and IWAE.
  assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == 6


def test_table_2_and_a_rerun_trains_nothing(smoke_root, capsys):
  results = _results(smoke_root, 2)
  (run,) = results["runs"]
  assert (run["block"], run["column"]) == ("WGAN-GP", "TRIP L")
  assert "| WGAN-GP-TRIP |" in results["markdown"] and "/ 16.72 |" in results["markdown"]
  capsys.readouterr()
  assert paper_tables.main(["--smoke", "--table", "2", "--workdir", smoke_root]) == 0
  out = capsys.readouterr().out
  assert "cifar10_wgangp_trip_l: finished run" in out and "training" not in out
  assert _results(smoke_root, 2)["runs"][0]["fid"] == run["fid"]  # the stored FID


def test_real_tables_need_inception_weights(capsys):
  with pytest.raises(SystemExit):
    paper_tables.main(["--table", "1"])
  assert "--inception_weights" in capsys.readouterr().err


def test_jobs_must_be_positive(capsys, tmp_path):
  with pytest.raises(SystemExit):
    paper_tables.main(["--smoke", "--jobs", "0", "--workdir", str(tmp_path)])
  assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_num_trainable_params_counts_what_training_updates():
  import jax

  from tripjax.configs import digits_vae_trip
  from tripjax.training import vae
  config = digits_vae_trip.get_config()
  config.prior.flows = 2
  model = vae.build_model(config, (28, 28, 1), "bernoulli")
  params = vae.init_params(model, jax.random.key(0))
  sizes = {name: sum(leaf.size for leaf in jax.tree.leaves(tree))
           for name, tree in params.items()}
  assert sizes["prior"] > 0
  assert vae.num_trainable_params(config, (28, 28, 1), "bernoulli") == sum(sizes.values())
  config.prior.learnable = False  # F: neither the prior nor its flows train
  assert vae.num_trainable_params(config, (28, 28, 1), "bernoulli") == (
      sizes["encoder"] + sizes["decoder"])


@pytest.mark.parametrize("block", ["vae", "vae_flows"])
def test_the_same_num_params_width_is_the_nearest_count_to_n01(block):
  from tripjax.training import vae
  columns = {column.label: column for column in paper_tables.COLUMNS}

  def config_of(label, same):
    return paper_tables.cell_config(
        paper_tables.Cell(paper_tables.BLOCKS[block], columns[label]), data_dir=None,
        smoke=False, same_num_params=same)

  def count(config, base_width):
    config = config.copy_and_resolve_references()
    config.model.widths = tuple(w * base_width // 64 for w in (64, 128, 256, 512))
    return vae.num_trainable_params(config, paper_tables.TABLE1_IMAGE_SHAPE,
                                    config.model.likelihood)

  target = count(config_of("N(0, I)", False), 64)
  assert config_of("N(0, I)", True).model.widths == (64, 128, 256, 512)
  assert config_of("TRIP F", True).model.widths == (64, 128, 256, 512)  # trains no prior
  for label in ("GMM L", "TRIP L"):
    config = config_of(label, True)
    width = config.model.widths[0]
    assert width < 64 and config.model.widths == tuple(
        width * k for k in (1, 2, 4, 8))
    gaps = {w: abs(count(config, w) - target) for w in (width - 1, width, width + 1)}
    assert gaps[width] == min(gaps.values()), (label, gaps)
    assert gaps[width] < abs(count(config, 64) - target)


def test_the_same_num_params_runs_only_the_vae_cells(tmp_path, capsys):
  root = str(tmp_path)
  assert paper_tables.main(["--smoke", "--table", "1", "--workdir", root,
                            "--the_same_num_params", "--cells", "vae_trip_l",
                            "wgan_trip_l"]) == 0
  path = os.path.join(root, "table1_same_num_params_smoke", "results",
                      "paper_table1_same_num_params.json")
  with open(path) as file:
    results = json.load(file)
  (run,) = results["runs"]  # the WGAN cell is not a VAE cell: not trained
  assert run["cell"] == "vae_trip_l"
  assert "--the_same_num_params" in results["protocol"]
  with pytest.raises(SystemExit):
    paper_tables.main(["--smoke", "--table", "2", "--the_same_num_params"])
  assert "Table 1" in capsys.readouterr().err
