"""aux_jax.meta_optimizer: clip → optax → projection, and skipping diverged steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aux_jax.hypergrad import HypergradInfo
from aux_jax.meta_optimizer import clamp_nonnegative, meta_optimizer


def _info(diverged):
  return HypergradInfo(jnp.float32(0.1), jnp.float32(0.5), jnp.asarray(diverged))


def test_clip_then_sgd_matches_manual_update():
  phi = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
  hg = {"w": jnp.array([30.0, 40.0]), "b": jnp.array(0.0)}  # norm 50
  meta = meta_optimizer(optax.sgd(0.1), max_norm=10.0)
  state = meta.init(phi)
  new, state, metrics = jax.jit(meta.update)(hg, _info(False), state, phi)
  np.testing.assert_allclose(new["w"], [1.0 - 0.1 * 6.0, -2.0 - 0.1 * 8.0], rtol=1e-6)
  np.testing.assert_allclose(new["b"], 0.5)
  np.testing.assert_allclose(metrics["hypergrad_norm"], 50.0, rtol=1e-6)
  assert int(state.num_updates) == 1 and int(state.num_skipped) == 0


def test_projection_clamps_to_nonnegative():
  phi = jnp.array([0.05, 1.0])
  meta = meta_optimizer(optax.sgd(1.0), max_norm=None, projection=clamp_nonnegative)
  new, _, _ = meta.update(jnp.array([1.0, 0.5]), _info(False), meta.init(phi), phi)
  np.testing.assert_allclose(new, [0.0, 0.5])


def test_diverged_or_nonfinite_hypergradients_are_skipped_and_counted():
  phi = jnp.array([1.0, 2.0])
  meta = meta_optimizer(optax.adam(0.1))
  state = meta.init(phi)
  new, state, metrics = meta.update(jnp.array([1.0, 1.0]), _info(True), state, phi)
  np.testing.assert_array_equal(new, phi)
  assert int(metrics["hypergrad_skipped"]) == 1
  new, state, _ = meta.update(jnp.array([jnp.nan, 1.0]), _info(False), state, phi)
  np.testing.assert_array_equal(new, phi)
  assert int(state.num_skipped) == 2 and int(state.num_updates) == 0
  # Adam's moments were not polluted: the next good step equals a fresh first step.
  good, state, _ = meta.update(jnp.array([1.0, -1.0]), _info(False), state, phi)
  fresh, _, _ = meta.update(jnp.array([1.0, -1.0]), _info(False), meta.init(phi), phi)
  np.testing.assert_allclose(good, fresh)
  assert np.all(np.isfinite(good)) and int(state.num_updates) == 1


def test_on_diverged_apply_clips_and_applies_where_skip_does_not():
  """g = (30, 40, 0), ‖g‖ = 50, clip 10 → (6, 8, 0); decay after clipping (torch)."""
  phi = {"a": jnp.array([1.0, -1.0, 2.0])}
  hg = {"a": jnp.array([30.0, 40.0, 0.0])}
  wd, lr = 0.1, 0.5
  tx = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))
  apply = meta_optimizer(tx, max_norm=10.0, on_diverged="apply")
  skip = meta_optimizer(tx, max_norm=10.0, on_diverged="skip")
  a_phi, a_state, a_m = apply.update(hg, _info(True), apply.init(phi), phi)
  s_init = skip.init(phi)
  s_phi, s_state, s_m = skip.update(hg, _info(True), s_init, phi)
  p = np.array([1.0, -1.0, 2.0])
  np.testing.assert_allclose(a_phi["a"], p - lr * (np.array([6.0, 8.0, 0.0]) + wd * p),
                             rtol=1e-6)
  np.testing.assert_array_equal(s_phi["a"], p)
  jax.tree.map(np.testing.assert_array_equal, s_state.opt_state, s_init.opt_state)
  assert (int(a_state.num_diverged), int(s_state.num_diverged)) == (1, 1)
  assert (int(a_state.num_updates), int(a_state.num_skipped)) == (1, 0)
  assert (int(s_state.num_updates), int(s_state.num_skipped)) == (0, 1)
  assert int(a_m["hypergrad_diverged"]) == 1 and int(a_m["hypergrad_skipped"]) == 0
  # Non-finite is skipped in both modes.
  bad = {"a": jnp.array([jnp.inf, 1.0, 0.0])}
  for meta in (apply, skip):
    new, state, _ = meta.update(bad, _info(True), meta.init(phi), phi)
    np.testing.assert_array_equal(new["a"], p)
    assert int(state.num_skipped) == 1 and int(state.num_updates) == 0


def test_on_diverged_rejects_unknown_mode():
  import pytest
  with pytest.raises(ValueError):
    meta_optimizer(optax.sgd(1.0), on_diverged="ignore")
