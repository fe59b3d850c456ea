"""benchmarks.gan_results: the GAN table (mean ± sd and the seeds' range of the
classifier FD, the confident share and the class TV) from run records, as its results
file renders it."""
import pytest

from benchmarks import gan_results


def _runs():
  return [{"prior": prior, "seed": seed, "classifier_fd": fd, "confident_share": share,
           "class_tv": tv, "fields": {}, "commits": []}
          for prior, seed, fd, share, tv in (("trip_L", 0, 50.0, 0.5, 0.1),
                                             ("trip_L", 1, 54.0, 0.6, 0.2),
                                             ("trip_L", 2, 61.0, 0.7, 0.3),
                                             ("normal", 0, 40.0, 0.9, 0.05))]


def test_summary_has_the_mean_sample_sd_and_range_over_seeds():
  rows = gan_results.summarize(_runs())
  assert [row["prior"] for row in rows] == ["normal", "trip_L"]  # table order
  trip = rows[1]
  assert trip["seeds"] == [0, 1, 2]
  assert trip["classifier_fd_mean"] == pytest.approx(55.0)
  assert trip["classifier_fd_sd"] == pytest.approx(31.0 ** 0.5)  # ddof = 1
  assert (trip["classifier_fd_min"], trip["classifier_fd_max"]) == (50.0, 61.0)
  assert trip["confident_share_mean"] == pytest.approx(0.6)
  assert trip["class_tv_sd"] == pytest.approx(0.1)


def test_table_shows_one_seed_without_a_spread_and_renders_from_its_results():
  floor = {"classifier_fd": 1.5, "confident_share": 0.97, "class_tv": 0.04}
  table = gan_results.render({"epochs": 40, "runs": _runs(), "floor": floor})
  assert "40 epochs (1,000 generator steps)" in table
  assert "| real validation digits (floor) | - | 1.50 | - | 97.0% | 0.040 |" in table
  assert "| TRIP L | 3 | 55.00 ± 5.57 | 50.00 – 61.00 | 60.0 ± 10.0% | 0.200 ± 0.100 |" \
      in table
  assert "| N(0, I) | 1 | 40.00 | 40.00 – 40.00 | 90.0% | 0.050 |" in table
  assert "GMM" not in table  # no runs, no row
  assert "learning rate" not in table  # runs scored before it was recorded
  rated = gan_results.render({"epochs": 40, "runs": [{**run, "learning_rate": 2e-4}
                                                     for run in _runs()]})
  assert "40 epochs (1,000 generator steps) at Adam learning rate 0.0002;" in rated


def test_runs_scored_before_the_confident_share_show_n_a():
  runs = [{key: value for key, value in run.items() if key != "class_tv"}
          for run in _runs()]
  table = gan_results.render({"epochs": 40, "runs": runs})
  assert "| N(0, I) | 1 | 40.00 | 40.00 – 40.00 | 90.0% | n/a |" in table
  assert "floor" not in table


def test_the_quickstart_budget_writes_gan_digits_and_others_name_their_epochs():
  assert gan_results.study_name(gan_results.DEFAULT_EPOCHS) == "gan_digits"
  assert gan_results.study_name(40 if gan_results.DEFAULT_EPOCHS != 40 else 80) \
      .startswith("gan_digits_")


def test_quickstart_rows_name_their_runs_by_the_fields_set_off_the_stock_config(tmp_path):
  from benchmarks import gan_quickstart
  from tripjax.configs import digits_wgangp_trip
  from tripjax.training import workdirs
  config = digits_wgangp_trip.get_config()
  config.train.learning_rate = 1e-3
  config.train.seed = 100
  config.train.num_epochs = 320  # resumable: not a difference of the run
  workdirs.save_config(config, str(tmp_path))
  fields = gan_quickstart.changed_fields(workdirs.load_config(str(tmp_path)))
  assert fields == {"train.learning_rate": 1e-3}
  scores = {"classifier_fd": 12.345, "confident_share": 0.8125, "class_tv": 0.0625}
  table = gan_quickstart.render({
      "split": "validation", "num_samples": 5000, "floor": scores,
      "runs": [{"fields": fields, "seed": 100, "step": 5000, **scores},
               {"fields": {}, "seed": 100, "step": 2500, **scores}]})
  assert "5,000 samples per run vs the validation digits" in table
  assert "| real test digits | - | - | 12.35 | 81.2% | 0.062 |" in table
  assert "| train.learning_rate=0.001 | 100 | 5000 | 12.35 | 81.2% | 0.062 |" in table
  assert "| stock | 100 | 2500 |" in table
