"""Tensor Ring Induced Prior (TRIP): exact densities, marginals, posteriors, sampling.

A TRIP over n variables puts a tensor ring on their component indices s (paper, eq. 1, 3):

  p(s) = Tr(Q_1[s_1] ··· Q_n[s_n]) / Z,   Z = Tr(∏_j Σ_k Q_j[k]),
  p(x | s) = ∏_j p(x_j | s_j),

where each core Q_j has shape (K_j, m, m) and is nonnegative. A continuous variable has a
1-D Gaussian per component, N(x_j; mu_jk, sigma_jk); a discrete variable takes the value
of its component (x_j = s_j). Summing over s gives, for any set of observed variables,

  p(x_obs) = Tr(∏_j A_j) / Z,   A_j = Σ_k w_jk Q_j[k],

with w_jk = p(x_j | s_j = k) for an observed variable and w_jk = 1 for a missing one
(Algorithm 1). Everything below is this one product of m×m matrices, computed in log
space (`ring.py` says how it is rescaled).

Variables are padded to the largest K with zero cores, so every array is rectangular.
A value that has zero probability (a discrete value out of range or not an integer, or a
combination the cores forbid) gives log p = -inf, never NaN: traced values cannot raise.

Where the paper is implemented:

  eq. 1, 4   p(s) ∝ Tr ∏_j Q_j[s_j], params ψ    params.TRIPParams, params.natural
             normalizer Z = Tr ∏_j Σ_k Q_j[k]     ring.log_normalizer (ring.product_tree)
  eq. 2      a marginalized variable's summed core weights.component_weights (w_jk = 1)
  eq. 3      p(z) as a GMM on the lattice         weights.log_weights (log N(z_j; mu, sigma))
  Alg. 1     marginal log p(z_M)                  densities.log_prob (ring.ring_log_trace)
  eq. 5      p(s_k | z_obs) of the 1-D GMMs       densities.posterior_weights (one VJP)
  sampling   exact joint / conditional draws      sampling.sample, sampling.sample_components
  sec. 3.1   EM init of the means and scales      em.refit_components
  eq. 10     ∇ E_p[f]: score function (eq. 10,    gradients.expectation_gradient
             leave-one-out) or pathwise means and
             scales with the cores' score

Sampling is exact, like the paper's chain rule over the variables (sections 2.1, 2.2), but
not a chain: with M_j = Σ_k w_jk Q_j[k], the ring's trace is a sum over bond
indices, p(a_0, ..., a_{n-1}) ∝ ∏_j M_j[a_j, a_{j+1}] (a_n = a_0), and given the bonds
the components are independent, p(s_j = k | a_j, a_{j+1}) ∝ w_jk Q_j[k][a_j, a_{j+1}].
The bonds are drawn by bisection over a pairwise product tree of the M_j: a_0 ∝
diag(∏ M_j), then every span [a, b) of a tree level draws its midpoint c from
p(a_c | a_a, a_b) ∝ L[a_a, a_c] R[a_c, a_b] (L, R the products of its halves), all
spans of a level at once, so the depth is ceil(log2 n) + 1 (`sampling._draw_bonds`).

Modules: `params` (specs, pytree, init), `checks` (the argument checks), `weights` (cores
and w_jk), `ring` (the contraction and its VJP, the product tree), `densities`,
`sampling`, `em`, `gradients` (unbiased gradients of E_p[f]), `distribution` (distrax
adapter). `Distribution` (the TRIP as a `distrax.Distribution`) is imported on first
use, so `import tripjax.prior` does not import distrax (and TensorFlow Probability's JAX
substrate under it).
"""

from tripjax.prior.checks import present_mask
from tripjax.prior.densities import log_prob
from tripjax.prior.densities import posterior_weights
from tripjax.prior.em import refit_components
from tripjax.prior.gradients import ESTIMATORS
from tripjax.prior.gradients import Draws
from tripjax.prior.gradients import Estimate
from tripjax.prior.gradients import draw
from tripjax.prior.gradients import expectation_gradient
from tripjax.prior.gradients import reparameterize
from tripjax.prior.gradients import score_log_prob
from tripjax.prior.gradients import score_surrogate
from tripjax.prior.params import Continuous
from tripjax.prior.params import Discrete
from tripjax.prior.params import Natural
from tripjax.prior.params import TRIPParams
from tripjax.prior.params import Variable
from tripjax.prior.params import from_natural
from tripjax.prior.params import init
from tripjax.prior.params import natural
from tripjax.prior.sampling import sample
from tripjax.prior.sampling import sample_components

__all__ = [
    "ESTIMATORS", "Continuous", "Discrete", "Distribution", "Draws", "Estimate", "Natural",
    "TRIPParams", "Variable", "draw", "expectation_gradient", "from_natural", "init",
    "log_prob", "natural", "posterior_weights", "present_mask", "refit_components",
    "reparameterize", "sample", "sample_components", "score_log_prob", "score_surrogate",
]


def __getattr__(name: str):
  """Imports `Distribution` (and with it distrax) on first access."""
  if name == "Distribution":
    from tripjax.prior.distribution import Distribution
    globals()[name] = Distribution
    return Distribution
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
