"""Thin absl launchers over the aux_jax library."""
