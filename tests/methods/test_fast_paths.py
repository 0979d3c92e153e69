"""The fast ways against their references on the trainer's own losses (SmallCNN with
per-task-chunk BatchNorm): MAOAL's one-pass lower step against the M-pass one (G, and
the hypergradient through G), and every way of `per_task_grads` against the vmap of
one-hot VJPs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import hypergrad
from aux_jax.methods import get_method
from aux_jax.methods.base import per_task_grads, per_task_grads_reference
from aux_jax.methods.maoal import layer_modules


@functools.lru_cache(maxsize=1)
def _experiment():
  from aux_jax.data import get_dataset
  from aux_jax.train.experiment import build_experiment
  from configs import maoal_digits

  c = maoal_digits.get_config()
  c.model.kwargs = {"width": 4, "features": 8}
  c.data.batch_size, c.data.dev_batch_size = 6, 8
  exp = build_experiment(c, get_dataset("digits", n_aux_digit=64, n_aux_parity=64,
                                        n_aux_ge5=64, n_aux_random=64))
  return exp, exp.init()


def _jit(exp, fn):
  """``fn(losses, params, *args)`` jitted with the losses of step 3 built inside (eager
  batch building is slow)."""
  return jax.jit(lambda state, *args: fn(exp.losses_at(state, 3), state.params, *args))


def _allclose(a, b, rtol=1e-4, atol=1e-7):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _maoal_pair(exp):
  t, part = exp.problem.num_tasks, exp.partition
  return (get_method("maoal", t, part, lower="one_pass"),
          get_method("maoal", t, part, lower="per_module"))


def _weights(exp):
  # Positive, zero (negative W: ω = 0) and an auxiliary task whose ω are all zero.
  k, m = exp.problem.num_tasks - 1, exp.partition.num_modules
  w = jnp.linspace(-0.4, 1.7, k * m).reshape(k, m)
  return w.at[0, :].set(-1.0).at[1, 0].set(-0.2)


def test_maoal_one_pass_lower_step_equals_the_per_module_one():
  exp, state = _experiment()
  fast, ref = _maoal_pair(exp)
  assert layer_modules(exp.partition) is not None
  w = _weights(exp)
  assert np.any(np.asarray(w) <= 0) and np.any(np.asarray(w) > 0)

  def both(losses, params, phi):
    assert losses.scaled is not None
    return (fast.direction(params, phi, (), losses, None),
            ref.direction(params, phi, (), losses, None),
            fast.direction(params, jnp.ones_like(phi), (), losses, None)[0])

  (g_fast, _, stats_fast, met_fast), (g_ref, _, stats_ref, met_ref), g_ones = _jit(
      exp, both)(state, w)
  _allclose(g_fast, g_ref)
  _allclose(stats_fast, stats_ref, rtol=1e-6)
  np.testing.assert_allclose(met_fast["loss_main"], met_ref["loss_main"], rtol=1e-6)
  # It did weight the modules: ω = 1 everywhere gives another direction.
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree.leaves(g_ones), jax.tree.leaves(g_fast)))
  assert diff > 1e-3


def test_maoal_one_pass_hypergradient_equals_the_per_module_one():
  exp, state = _experiment()
  fast, ref = _maoal_pair(exp)
  w = _weights(exp)

  def hyper(losses, params, phi):
    merge = lambda t: {"backbone": t, "heads": params["heads"]}
    out = []
    for method in (fast, ref):
      g = lambda t, a, m=method: m.direction(merge(t), a, (), losses, None)[0]["backbone"]
      out.append(hypergrad.implicit_hypergradient(
          g, lambda t: losses.dev(merge(t)), params["backbone"], phi,
          solver_kwargs={"steps": 2, "step": 1.0, "scale_by_step": False})[0])
    return out

  hg_fast, hg_ref = _jit(exp, hyper)(state, w)
  assert float(jnp.max(jnp.abs(hg_ref))) > 0
  np.testing.assert_allclose(hg_fast, hg_ref, rtol=2e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(hg_fast)[np.asarray(w) <= 0], 0.0)


def test_per_task_grads_ways_equal_the_reference():
  exp, state = _experiment()
  modes = ("vmap", "map", "vjp")
  out = _jit(exp, lambda losses, p: (
      [per_task_grads(losses, p, m) for m in modes], per_task_grads_reference(losses, p)))(
          state)
  (ref, ref_losses, ref_stats) = out[1]
  for got, got_losses, got_stats in out[0]:
    np.testing.assert_allclose(got_losses, ref_losses, rtol=1e-6)
    _allclose(got, ref, rtol=2e-4, atol=2e-6)
    _allclose(got_stats, ref_stats, rtol=1e-6)


def test_per_task_grads_rejects_an_unknown_way():
  from aux_jax.methods.base import resolve_per_task_grads
  with pytest.raises(ValueError, match="unknown per_task_grads 'loop'"):
    resolve_per_task_grads("loop")
  assert resolve_per_task_grads("auto") in ("vmap", "map", "vjp")


def test_attittud_basis_map_equals_vmap():
  from aux_jax.rules.attittud import subspace_basis
  key = jax.random.key(0)
  x = jax.random.normal(key, (6, 3))
  params = {"a": jax.random.normal(jax.random.key(1), (3, 4)),
            "b": jax.random.normal(jax.random.key(2), (4,))}
  fn = lambda p: jnp.tanh(x @ p["a"]) @ p["b"]
  got = [jax.jit(lambda p, b=b: subspace_basis(fn, p, key, 3, 1, batched=b))(params)
         for b in ("vmap", "map")]
  _allclose(got[0], got[1], rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(got[0]["a"]))) > 0.1


def test_main_fresh_draws_main_examples_apart_from_the_batch():
  """`LossFns.main_fresh` (ATTITTUD's g*): n main-task losses from a stream of their
  own: other rows than the step's batch, a pure function of the step."""
  from aux_jax.data import sampler
  from aux_jax.train import problems

  keys = problems.Keys(*jax.random.split(jax.random.key(0), 4))
  count, n_max, b, n = 60, 64, 12, 5
  same = 0
  for step in range(6):
    fresh = np.asarray(problems.fresh_main_indices(keys, step, count, n, n_max))
    again = np.asarray(problems.fresh_main_indices(keys, step, count, n, n_max))
    batch = np.asarray(sampler.task_batch_indices(keys.data, step, [count, count], b,
                                                  n_max)[0])
    np.testing.assert_array_equal(fresh, again)
    assert len(set(fresh)) == n and fresh.min() >= 0 and fresh.max() < count
    same += set(fresh) <= set(batch)
  assert same == 0      # never a subset of the batch (the original's fresh subsample)

  exp, state = _experiment()
  losses, g = _jit(exp, lambda losses, params: (
      losses.main_fresh(params, 5)[0],
      jax.grad(lambda p: jnp.mean(losses.main_fresh(p, 5)[0]))(params)))(state)
  assert losses.shape == (5,) and np.all(np.isfinite(losses)) and np.all(losses > 0)
  g_batch = _jit(exp, lambda losses, params: jax.grad(
      lambda p: jnp.mean(losses.per_sample(p)[0][0]))(params))(state)
  assert not np.allclose(np.asarray(g["heads"]["kernel"][0]),
                         np.asarray(g_batch["heads"]["kernel"][0]))
