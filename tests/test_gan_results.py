"""benchmarks.gan_results: the GAN table (mean ± sd and the seeds' range of the
classifier FD) from run records, as its results file renders it."""
import pytest

from benchmarks import gan_results


def _runs():
  return [{"prior": prior, "seed": seed, "classifier_fd": fd, "fields": {},
           "commits": []}
          for prior, seed, fd in (("trip_L", 0, 50.0), ("trip_L", 1, 54.0),
                                  ("trip_L", 2, 61.0), ("normal", 0, 40.0))]


def test_summary_has_the_mean_sample_sd_and_range_over_seeds():
  rows = gan_results.summarize(_runs())
  assert [row["prior"] for row in rows] == ["normal", "trip_L"]  # table order
  trip = rows[1]
  assert trip["seeds"] == [0, 1, 2]
  assert trip["classifier_fd_mean"] == pytest.approx(55.0)
  assert trip["classifier_fd_sd"] == pytest.approx(31.0 ** 0.5)  # ddof = 1
  assert (trip["classifier_fd_min"], trip["classifier_fd_max"]) == (50.0, 61.0)


def test_table_shows_one_seed_without_a_spread_and_renders_from_its_results():
  table = gan_results.render({"epochs": 40, "runs": _runs()})
  assert "40 epochs (1000 generator steps)" in table
  assert "| TRIP L | 3 | 55.00 ± 5.57 | 50.00 – 61.00 |" in table
  assert "| N(0, I) | 1 | 40.00 | 40.00 – 40.00 |" in table
  assert "GMM" not in table  # no runs, no row
