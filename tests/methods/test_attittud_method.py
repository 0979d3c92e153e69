"""The ATTITTUD trainer Method: fresh head gradients every step and the power-iteration
option. (Selection from a config is exercised by tests/train/test_two_phase.py.)"""

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.methods import LossFns, get_method
from aux_jax.partition import make_partition
from aux_jax.rules import subspace_basis
from aux_jax.rules.tree import ravel_tasks

T, B, D, F, C = 3, 6, 3, 5, 3  # tasks, batch, inputs, features, classes


def _params(seed=0):
  ks = jax.random.split(jax.random.key(seed), 4)
  n = lambda k, s: jax.random.normal(k, s) * 0.7
  return {"backbone": {"kernel": n(ks[0], (D, F)), "bias": n(ks[1], (F,))},
          "heads": {"kernel": n(ks[2], (T, F, C)), "bias": n(ks[3], (T, C))}}


def _batch(step):
  kx, ky = jax.random.split(jax.random.fold_in(jax.random.key(1), step))
  return jax.random.normal(kx, (T, B, D)), jax.random.randint(ky, (T, B), 0, C)


def _task_loss(p, t, x, y):
  """Task t's per-sample losses f32[B] on the batch (x, y)."""
  h = jnp.tanh(x[t] @ p["backbone"]["kernel"] + p["backbone"]["bias"])
  logits = h @ p["heads"]["kernel"][t] + p["heads"]["bias"][t]
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[t][:, None], 1)[:, 0]


def _losses(x, y):
  per_sample = lambda p: (jnp.stack([_task_loss(p, t, x, y) for t in range(T)]), None)
  return LossFns(per_sample, lambda p: jnp.mean(_task_loss(p, 0, x, y)))


@jax.jit
def _direct_head_grads(params, x, y):
  """f32 head gradients of every task, [T] of heads pytrees stacked."""
  return jax.vmap(lambda t: jax.grad(
      lambda p: jnp.mean(_task_loss(p, t, x, y)))(params)["heads"])(jnp.arange(T))


@jax.jit
def _reference_basis(params, x, y, key):
  merge = lambda bb: {"backbone": bb, "heads": params["heads"]}
  return subspace_basis(lambda bb: _task_loss(merge(bb), 0, x, y), params["backbone"],
                        key, 2, 2)


def test_head_gradients_are_fresh_every_step_and_power_iters_reach_the_basis():
  # The original accumulates the primary head's gradient across steps;
  # here every head gets exactly its own task's gradient of the current batch.
  params = _params()
  method = get_method("attittud", T, make_partition(params["backbone"], "global"),
                      num_basis=2, pca_every=2, power_iters=2, lambdas=(1.0, 1.0, -1.0))
  state = method.init(None).state
  direction = jax.jit(lambda p, s, x, y, k: method.direction(p, (), s, _losses(x, y), k))
  for step in range(4):
    x, y = _batch(step)
    key = jax.random.fold_in(jax.random.key(5), step)
    grads, state, _, metrics = direction(params, state, x, y, key)
    per_task = _direct_head_grads(params, x, y)  # leading T: task t's gradient
    # Every head row t holds task t's gradient of this step's batch, nothing else.
    for t in range(T):
      for name in ("kernel", "bias"):
        np.testing.assert_allclose(np.asarray(grads["heads"][name][t]),
                                   np.asarray(per_task[name][t][t]), rtol=1e-5, atol=1e-6)
    if step % 2 == 0:  # a rebuild: the range finder with 2 power iterations
      assert float(metrics["basis_refreshed"]) == 1.0
      np.testing.assert_allclose(np.asarray(ravel_tasks(state.basis)[0]),
                                 np.asarray(ravel_tasks(_reference_basis(params, x, y, key))[0]),
                                 atol=1e-5)
    else:
      assert float(metrics["basis_refreshed"]) == 0.0
    params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
