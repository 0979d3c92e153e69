"""aux_jax.rules.tree against NumPy on a flattened matrix of per-task gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.rules import tree


def _grads(rng, t):
  """A per-task gradient pytree (leaves [T, ...]) and its NumPy [T, D] matrix."""
  g = {"w": rng.normal(size=(t, 3, 2)), "b": [rng.normal(size=(t, 4)), rng.normal(size=(t,))]}
  flat = np.concatenate([g["w"].reshape(t, -1), g["b"][0], g["b"][1][:, None]], axis=1)
  return jax.tree.map(jnp.asarray, g), flat


def test_dots_gram_norms_combine_match_numpy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    grads, flat = _grads(rng, 4)
    v_tree, v = _grads(rng, 1)
    v_tree = tree.task_slice(v_tree, 0)
    w = rng.normal(size=4)
    np.testing.assert_allclose(tree.task_dots(grads, v_tree), flat @ v[0], rtol=1e-12)
    np.testing.assert_allclose(tree.task_gram(grads), flat @ flat.T, rtol=1e-12)
    np.testing.assert_allclose(tree.task_norms(grads), np.linalg.norm(flat, axis=1), rtol=1e-12)
    combined = tree.task_combine(grads, jnp.asarray(w))
    got = np.concatenate([np.ravel(x) for x in jax.tree.leaves(
        {"w": combined["w"], "b": combined["b"]})])
    # Leaves order is b[0], b[1], w (dict keys sorted).
    want = w @ flat
    want = np.concatenate([want[6:10], want[10:], want[:6]])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_ravel_tasks_round_trip():
  rng = np.random.default_rng(1)
  grads, _ = _grads(rng, 3)
  matrix, unravel = tree.ravel_tasks(grads)
  assert matrix.shape == (3, 11)
  np.testing.assert_allclose(matrix[1], jax.flatten_util.ravel_pytree(tree.task_slice(grads, 1))[0])
  back = unravel(matrix)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(grads)):
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="no leaves"):
    tree.num_tasks({})
  with pytest.raises(ValueError, match="disagree"):
    tree.num_tasks({"a": jnp.zeros((2, 3)), "b": jnp.zeros((3,))})
  with pytest.raises(ValueError, match="scalar"):
    tree.num_tasks({"a": jnp.zeros(())})
  with pytest.raises(ValueError, match="shape"):
    tree.task_combine({"a": jnp.zeros((2, 3))}, jnp.ones(3))
