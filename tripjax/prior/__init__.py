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

  eq. 1 (p(s) ∝ Tr ∏ Q_j[s_j]), eq. 4 (ψ)  params.TRIPParams, params.natural; the
                                          normalizer Z is ring.log_normalizer
  eq. 2 (marginal: summed core)           weights.component_weights (w_jk = 1 if missing)
  eq. 3 (p(z) as a lattice GMM)           weights.log_weights (log N(z_j; mu_jk, sigma_jk))
  Algorithm 1 (marginal log p(z_M))       densities.log_prob via ring.ring_log_trace
  eq. 5 (p(s_k | z_obs), GMM conditional) densities.posterior_weights (one ring VJP)
  sampling (chain rule over the ring)     sampling.sample, sampling.sample_components
  section 3.1 (EM init of means, scales)  em.refit_components

Modules: `params` (specs, pytree, init), `checks` (the argument checks), `weights` (cores
and w_jk), `ring` (the contraction and its VJP), `densities`, `sampling`, `em`,
`distribution` (distrax adapter).
"""

from tripjax.prior.checks import present_mask
from tripjax.prior.densities import log_prob, posterior_weights
from tripjax.prior.distribution import Distribution
from tripjax.prior.em import refit_components
from tripjax.prior.params import (Continuous, Discrete, Natural, TRIPParams, Variable,
                                  from_natural, init, natural)
from tripjax.prior.sampling import sample, sample_components

__all__ = [
    "Continuous", "Discrete", "Distribution", "Natural", "TRIPParams", "Variable",
    "from_natural", "init", "log_prob", "natural", "posterior_weights", "present_mask",
    "refit_components", "sample", "sample_components",
]
