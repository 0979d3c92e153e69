"""aux_jax: auxiliary learning in JAX.

Learn how much each auxiliary loss should help the main task -- per task, per module,
per sample or through a small network -- by bi-level optimization with implicit
differentiation (see `aux_jax.hypergrad`).
"""

__version__ = "0.1.0"
