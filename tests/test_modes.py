"""Tests for tripjax/metrics/modes.py and the 2-D point sets of tripjax/data.py."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from tripjax import data as data_lib
from tripjax.metrics import modes
from tripjax.training import image_grid

RING = data_lib.point_mixture("ring8")
GRID = data_lib.point_mixture("grid25")


def _brute_force(samples, centres, sd):
  """The module docstring's rules, one sample at a time in pure Python."""
  counts = [0] * len(centres)
  high_quality = 0
  for x, y in samples:
    distances = [math.hypot(x - cx, y - cy) for cx, cy in centres]
    nearest = min(range(len(centres)), key=lambda k: (distances[k], k))
    if distances[nearest] <= 3 * sd:
      high_quality += 1
      counts[nearest] += 1
  total = sum(counts)
  kl = (math.inf if total == 0 else
        sum(c / total * math.log(len(centres) * c / total) for c in counts if c))
  return sum(c > 0 for c in counts), high_quality / len(samples), kl, counts


def test_hand_built_sets_give_their_known_scores():
  centres, sd = RING
  # Two samples at mode 0, one each at modes 3 and 5: q = (1/2, 1/4, 1/4) over 3 of 8,
  # KL = 1/2 log 4 + 2 * 1/4 log 2 = 1.5 log 2.
  samples = centres[[0, 0, 3, 5]]
  result = modes.mode_metrics(samples, centres, sd)
  assert result.modes_covered == 3 and result.high_quality_share == 1.0
  np.testing.assert_allclose(result.reverse_kl, 1.5 * math.log(2), rtol=1e-12)
  np.testing.assert_array_equal(result.counts, [2, 0, 0, 1, 0, 1, 0, 0])
  # 2.9 sd from mode 1 counts, 3.1 sd from mode 2 does not, the origin is far from all:
  # one high-quality sample of three, one mode, all its mass there: KL = log 8.
  direction = np.array([0.6, 0.8])
  samples = np.stack([centres[1] + 2.9 * sd * direction,
                      centres[2] + 3.1 * sd * direction, np.zeros(2)])
  result = modes.mode_metrics(samples, centres, sd)
  assert result.modes_covered == 1
  np.testing.assert_allclose(result.high_quality_share, 1 / 3)
  np.testing.assert_allclose(result.reverse_kl, math.log(8), rtol=1e-12)
  # Every mode once: KL 0. No high-quality sample: 0 modes, share 0, KL +inf.
  result = modes.mode_metrics(GRID.centres + 0.01, *GRID)
  assert (result.modes_covered, result.high_quality_share, result.reverse_kl) == (25, 1, 0)
  result = modes.mode_metrics(np.full((5, 2), 1.0), *GRID)  # 1.41 from every centre
  assert (result.modes_covered, result.high_quality_share) == (0, 0.0)
  assert result.reverse_kl == math.inf


def test_metrics_equal_a_brute_force_count_on_random_samples():
  rng = np.random.default_rng(0)
  for mixture in (RING, GRID):
    # Half near modes (some inside 3 sd, some outside), half anywhere.
    near = (mixture.centres[rng.integers(0, len(mixture.centres), 300)]
            + 2.5 * mixture.sd * rng.standard_normal((300, 2)))
    anywhere = rng.uniform(-5, 5, (300, 2))
    samples = np.concatenate([near, anywhere])
    result = modes.mode_metrics(samples, *mixture)
    covered, share, kl, counts = _brute_force(samples, mixture.centres, mixture.sd)
    assert result.modes_covered == covered and 0 < covered < len(mixture.centres) + 1
    np.testing.assert_allclose(result.high_quality_share, share, rtol=1e-12)
    np.testing.assert_allclose(result.reverse_kl, kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result.counts, counts)
    assert 0.2 < share < 0.9  # both kinds of sample are there


def test_reverse_kl_against_scipy_entropy_and_its_bounds():
  rng = np.random.default_rng(1)
  for size in (1, 2, 8, 25):
    counts = rng.integers(0, 5, size)
    counts[0] += 1
    expected = stats.entropy(counts, np.ones(size))  # KL(q || uniform), 0 log 0 = 0
    value = modes.reverse_kl_to_uniform(counts)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-15)
    assert 0 <= value <= math.log(size) + 1e-12
  with pytest.raises(ValueError, match="non-negative"):
    modes.reverse_kl_to_uniform([1, -1])
  with pytest.raises(ValueError, match="sd must be positive"):
    modes.mode_metrics(np.zeros((1, 2)), RING.centres, 0.0)
  with pytest.raises(ValueError, match="agree in D"):
    modes.mode_metrics(np.zeros((1, 3)), RING.centres, 0.1)


def test_true_mixture_draws_score_as_the_mixture_says():
  # 2,500 draws of the data: every mode covered, P(||x - c|| <= 3 sd) = 1 - exp(-4.5)
  # for a 2-D isotropic Gaussian (chi with 2 degrees of freedom), within 4 SE.
  for name in data_lib.POINT_DATASETS:
    mixture = data_lib.point_mixture(name)
    points, _ = data_lib.sample_points(mixture, 2500, np.random.default_rng(2))
    result = modes.mode_metrics(points, *mixture)
    assert result.modes_covered == len(mixture.centres)
    p = 1 - math.exp(-4.5)
    assert abs(result.high_quality_share - p) < 4 * math.sqrt(p * (1 - p) / 2500)
    # Multinomial counts: E[KL] ~ (K - 1) / (2 n); far below a single lost mode's.
    assert result.reverse_kl < 5 * (len(mixture.centres) - 1) / (2 * 2500)


def test_point_sets_geometry_splits_and_statistics():
  np.testing.assert_allclose(np.linalg.norm(RING.centres, axis=1), 2.0)
  np.testing.assert_allclose(np.linalg.norm(RING.centres[1] - RING.centres[0]),
                             4 * math.sin(math.pi / 8))
  assert RING.sd == 0.02 and GRID.sd == 0.05
  assert {tuple(c) for c in GRID.centres} == set(itertools.product(range(-4, 5, 2),
                                                                   repeat=2))
  assert data_lib.image_shape("grid25") == (2,)
  train = data_lib.load_dataset("ring8", "train")
  test = data_lib.load_dataset("ring8", "test")
  assert len(train) == data_lib.POINT_SPLIT_SIZES["train"] and train.image_shape == (2,)
  points, components = train.read(np.arange(10))
  assert points.shape == (10, 2) and points.dtype == np.float32
  assert components.dtype == np.int32
  np.testing.assert_array_equal(points, data_lib.load_dataset("ring8", "train")[:10])
  assert not np.allclose(points, test[:10])  # each split its own draw
  # Components uniform (chi-square), residuals N(0, sd^2 I) around their centres.
  all_points, all_components = train.read(np.arange(len(train)))
  frequencies = np.bincount(all_components, minlength=8)
  assert stats.chisquare(frequencies).pvalue > 1e-3
  residuals = (all_points - RING.centres[all_components]) / RING.sd
  standard_error = 1 / math.sqrt(len(residuals))
  assert np.all(np.abs(residuals.mean(axis=0)) < 4 * standard_error)
  assert np.all(np.abs(residuals.std(axis=0) - 1) < 4 * standard_error)
  with pytest.raises(ValueError, match="ring8, grid25"):
    data_lib.load_dataset("ring9", "train")


def test_scatter_points_draws_points_where_they_are():
  centres, sd = RING
  points = np.array([[0.0, 0.0], [2.5, 2.5], [10.0, 10.0]])  # the last is off the view
  image = image_grid.scatter_points(points, centres, sd, size=101, margin=0.5)
  assert image.shape == (101, 101, 3) and image.dtype == np.uint8
  blue = np.array([30, 60, 200])
  # View [-2.5, 2.5]^2, 20 pixels per unit, y up: (0, 0) at the centre pixel, (2.5, 2.5)
  # at the top right corner.
  assert (image[50, 50] == blue).all() and (image[0, 100] == blue).all()
  assert np.count_nonzero((image == blue).all(axis=-1)) == 2
  red = (image[..., 0] > 200) & (image[..., 1] < 100)
  assert red[50, 90]  # the cross at mode 0, (2, 0)
