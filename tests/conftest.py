"""Shared pytest setup: a small, fast CPU configuration for every test."""

import os

# Several fake CPU devices for the data-parallel tests; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

# Tests use tiny models: compile time dominates, so skip most XLA optimizations.
jax.config.update("jax_disable_most_optimizations", True)
