"""tripjax: the Tensor Ring Induced Prior (TRIP) for JAX/Flax generative models."""

__version__ = "0.1.0"
