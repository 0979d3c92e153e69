"""The gradient-rule methods (pcgrad, cagrad, gradnorm, olaux, slgrad, attittud) against
direct computations with per-task / per-sample `jax.grad` and NumPy on a tiny model, and
three trainer steps of each on the digits data."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from aux_jax.methods import LossFns, get_method
from aux_jax.methods.adaptive import last_layer_paths
from aux_jax.partition import make_partition
from aux_jax.rules import cagrad as cagrad_rule
from aux_jax.rules import random_orders, subspace_basis
from aux_jax.rules.tree import ravel_tasks

T, B, D, F, C = 4, 5, 3, 4, 3  # tasks, batch, inputs, features, classes


def _tiny(seed=0, shift=0.0):
  """A 2-layer shared MLP with per-task heads; each task its own batch.

  Returns (params, LossFns, task_loss) with task_loss(params, t) -> f32[B].
  ``shift`` moves the batches (a different step's data).
  """
  ks = jax.random.split(jax.random.key(seed), 8)
  n = lambda k, s: jax.random.normal(k, s) * 0.7
  params = {
      "backbone": {"l1": {"kernel": n(ks[0], (D, F)), "bias": n(ks[1], (F,))},
                   "l2": {"kernel": n(ks[2], (F, F)), "bias": n(ks[3], (F,))}},
      "heads": {"kernel": n(ks[4], (T, F, C)), "bias": n(ks[5], (T, C))},
  }
  x = jax.random.normal(ks[6], (T, B, D)) + shift
  y = jax.random.randint(ks[7], (T, B), 0, C)
  xd = x[0] + 0.1

  def features(bb, inputs):
    h = jnp.tanh(inputs @ bb["l1"]["kernel"] + bb["l1"]["bias"])
    return jnp.tanh(h @ bb["l2"]["kernel"] + bb["l2"]["bias"])

  def nll(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]

  def task_loss(p, t):
    logits = features(p["backbone"], x[t]) @ p["heads"]["kernel"][t] + p["heads"]["bias"][t]
    return nll(logits, y[t])

  def per_sample(p):
    return jnp.stack([task_loss(p, t) for t in range(T)]), None

  def dev(p):
    logits = features(p["backbone"], xd) @ p["heads"]["kernel"][0] + p["heads"]["bias"][0]
    return jnp.mean(nll(logits, y[0]))

  return params, LossFns(per_sample, dev), task_loss


def _partition(params):
  return make_partition(params["backbone"], "global")


def _task_grads(params, task_loss):
  return [jax.grad(lambda p: jnp.mean(task_loss(p, t)))(params) for t in range(T)]


def _flat(tree):
  return np.asarray(ravel_pytree(tree)[0], np.float64)


def _close(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(_flat(a), _flat(b), rtol=rtol, atol=atol)


def _wsum(gs, w):
  return jax.tree.map(lambda *leaves: sum(wi * l for wi, l in zip(w, leaves)), *gs)


def _stack(gs):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *gs)


def _sgd(params, grads, lr=0.3):
  return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def _run(method, params, losses, state, key=jax.random.key(2)):
  fn = lambda p, s, k: method.direction(p, (), s, losses, k)
  return jax.jit(fn)(params, state, key)


def test_pcgrad_matches_numpy_projection_with_the_same_orders():
  params, losses, task_loss = _tiny()
  gs = _task_grads(params, task_loss)
  method = get_method("pcgrad", T)
  key = jax.random.key(7)
  grads, _, _, metrics = _run(method, params, losses, method.init(key).state, key)

  g = np.stack([_flat(x["backbone"]) for x in gs])
  orders = np.asarray(random_orders(key, T))
  coeff = np.zeros(T)
  projections = 0
  for i in range(T):
    gi, ci = g[i].copy(), np.eye(T)[i]
    for j in orders[i]:
      dot = gi @ g[j]
      if dot < 0:
        gi, ci = gi - dot / (g[j] @ g[j]) * g[j], ci - dot / (g[j] @ g[j]) * np.eye(T)[j]
        projections += 1
    coeff += ci
  assert 0 < projections, "the fixture should have conflicting gradients"
  np.testing.assert_allclose(_flat(grads["backbone"]), coeff @ g, rtol=1e-4, atol=1e-6)
  _close(grads["heads"], _wsum([x["heads"] for x in gs], [1.0] * T))
  np.testing.assert_allclose(metrics["weights"], coeff[1:], rtol=1e-4)
  assert int(metrics["num_projections"]) == projections


def test_cagrad_is_the_rule_on_direct_grads_and_the_closed_form_update():
  # float64: the iterative simplex solver, jitted or not, then agrees to rounding.
  with jax.enable_x64(True):
    params, losses, task_loss = _tiny()
    gs = _task_grads(params, task_loss)
    c = 0.4
    method = get_method("cagrad", T, c=c, num_iterations=300)
    grads, _, _, metrics = _run(method, params, losses, ())
    want, info = cagrad_rule(_stack([x["backbone"] for x in gs]), c=c, num_iterations=300)
    _close(grads["backbone"], want)
    _close(grads["heads"], _wsum([x["heads"] for x in gs], [1.0] * T))
    # d = (ḡ + c‖ḡ‖/‖g_w‖ g_w) / (1 + c²) with the method's reported simplex weights.
    w = np.concatenate([[float(metrics["main_weight"])], np.asarray(metrics["weights"])])
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-5)
    g = np.stack([_flat(x["backbone"]) for x in gs])
    g0, gw = g.mean(0), w @ g
    d = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c**2)
    np.testing.assert_allclose(_flat(grads["backbone"]), d, rtol=1e-4, atol=1e-6)
    # w* is optimal: no vertex of the simplex has a lower objective.
    obj = lambda v: v @ g @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(v @ g)
    assert all(obj(w) <= obj(e) + 1e-6 for e in np.eye(T))
    np.testing.assert_allclose(float(info.objective), obj(w), rtol=1e-4)
    # c = 0: the ball is the point ḡ, so the update is the mean task gradient.
    grads0, _, _, _ = _run(get_method("cagrad", T, c=0.0), params, losses, ())
    np.testing.assert_allclose(_flat(grads0["backbone"]), g.mean(0), rtol=1e-6, atol=1e-9)


def _gradnorm_numpy(w, losses, initial, norms, alpha, lr):
  r = losses / initial
  r = r / r.mean()
  target = np.mean(w * norms) * r ** alpha
  w = np.maximum(w - lr * np.sign(w * norms - target) * norms, 1e-3)
  return w * len(w) / w.sum()


def test_gradnorm_two_steps_match_numpy_on_the_last_layer():
  alpha, lr = 1.5, 0.2
  params, losses, task_loss = _tiny()
  method = get_method("gradnorm", T, _partition(params), alpha=alpha, lr=lr)
  state = method.init(None).state
  w, initial = np.ones(T), None
  for step in range(2):
    if step:
      _, losses, task_loss = _tiny(shift=0.3)  # the next step's batches
    gs = _task_grads(params, task_loss)
    grads, state, _, metrics = _run(method, params, losses, state)
    _close(grads, _wsum(gs, list(w)))
    np.testing.assert_allclose(metrics["weights"], w[1:], rtol=1e-5)
    # Default layer: l2/{bias,kernel}, the last leaf group in tree order.
    norms = np.array([np.linalg.norm(_flat(x["backbone"]["l2"])) for x in gs])
    task_losses = np.array([float(jnp.mean(task_loss(params, t))) for t in range(T)])
    initial = task_losses if initial is None else initial
    w = _gradnorm_numpy(w, task_losses, initial, norms, alpha, lr)
    np.testing.assert_allclose(state.weights, w, rtol=1e-5)
    params = _sgd(params, grads)
  assert not np.allclose(w, 1.0)


def test_gradnorm_layer_selection():
  paths = ["block1/conv/kernel", "dense/bias", "dense/kernel"]
  assert last_layer_paths(paths) == ("dense/bias", "dense/kernel")
  resnet = ["stage4/block1/conv2/conv/kernel", "stem/bn/bias", "stem/conv/kernel"]
  assert last_layer_paths(resnet, r"^stage4/block1/conv2/") == (resnet[0],)
  with pytest.raises(ValueError, match="matches no backbone parameter"):
    last_layer_paths(paths, "^stage4/")
  params, _, _ = _tiny()
  with pytest.raises(ValueError, match="gradnorm needs a partition"):
    get_method("gradnorm", T)
  with pytest.raises(ValueError, match="matches no backbone parameter"):
    get_method("gradnorm", T, _partition(params), layer="^l3/")


def test_olaux_weights_after_n_steps():
  # Defaults = SLGrad's OL-AUX: every 2 steps, PyTorch SGD with momentum 0.9 and lr η·2
  # on the weights, gradient −η Σ <g_0, g_k>; η = 0.5 here so that the weights move.
  eta = 0.5
  params, _, _ = _tiny()
  method = get_method("olaux", T, model_lr=eta)
  state = method.init(None).state
  w, acc, buf = np.ones(T), np.zeros(T - 1), np.zeros(T - 1)
  for step in range(6):
    _, losses, task_loss = _tiny(shift=0.2 * step)
    gs = _task_grads(params, task_loss)
    grads, state, _, metrics = _run(method, params, losses, state)
    _close(grads, _wsum(gs, list(w)))
    np.testing.assert_allclose(metrics["weights"], w[1:], rtol=1e-5)
    g = np.stack([_flat(x["backbone"]) for x in gs])
    acc += g[1:] @ g[0]
    if (step + 1) % 2 == 0:
      buf = 0.9 * buf - eta * acc
      w[1:] -= eta * 2 * buf
      acc[:] = 0
    np.testing.assert_allclose(state.weights, w, rtol=1e-5, atol=1e-7)
    params = _sgd(params, grads)
  assert not np.allclose(w, 1.0)


def test_slgrad_direction_is_the_alignment_weighted_per_sample_gradient():
  params, losses, task_loss = _tiny()
  heads = params["heads"]
  merge = lambda bb: {"backbone": bb, "heads": heads}
  g_val = _flat(jax.grad(lambda bb: losses.dev(merge(bb)))(params["backbone"]))
  # Per-sample gradients of every task w.r.t. all parameters (T·B of them).
  jac = [jax.jacrev(lambda p: task_loss(p, t))(params) for t in range(T)]  # leaves [B, ...]
  sample = lambda t, i: jax.tree.map(lambda x: x[i], jac[t])
  a = np.array([[_flat(sample(t, i)["backbone"]) @ g_val for i in range(B)]
                for t in range(T)])
  assert (a > 0).any() and (a < 0).any(), "the fixture should have both signs"
  w = np.maximum(a, 0) / np.maximum(a, 0).sum()
  want = sum(w[t, i] * _flat(sample(t, i)) for t in range(T) for i in range(B))

  method = get_method("slgrad", T)
  grads, _, _, metrics = _run(method, params, losses, ())
  # The original's scale: each task's weighted sum divided by the batch size.
  np.testing.assert_allclose(_flat(grads), want / B, rtol=1e-4, atol=1e-6)
  grads_sum, _, _, _ = _run(get_method("slgrad", T, scale="sum"), params, losses, ())
  np.testing.assert_allclose(_flat(grads_sum), want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["weights"], w[1:].sum(1), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(metrics["main_sample_weights"], w[0], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(float(metrics["main_weight"]), w[0].sum(), rtol=1e-4)


def test_slgrad_update_scales_as_one_over_batch_size():
  # One example per task repeated B times: every a[t, i] of a task is equal, so
  # W[t, i] = a_t⁺ / (B Σ_s a_s⁺) and the update is (1/B) Σ_t (a_t⁺/Σ_s a_s⁺) ∇ℓ_t(x):
  # B times smaller for B copies (the original's 1/B on top of normalised weights).
  params, _, _ = _tiny()
  x0 = jax.random.normal(jax.random.key(3), (T, 1, D))
  y0 = jnp.array([[0], [1], [2], [1]])[:T]
  xd = jax.random.normal(jax.random.key(4), (3, D))
  yd = jnp.array([0, 2, 1])

  def features(bb, inputs):
    h = jnp.tanh(inputs @ bb["l1"]["kernel"] + bb["l1"]["bias"])
    return jnp.tanh(h @ bb["l2"]["kernel"] + bb["l2"]["bias"])

  def nll(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)[:, 0]

  def task_loss(p, t, reps):
    logits = (features(p["backbone"], jnp.repeat(x0[t], reps, 0)) @ p["heads"]["kernel"][t]
              + p["heads"]["bias"][t])
    return nll(logits, jnp.repeat(y0[t], reps))

  def dev(p):
    return jnp.mean(nll(features(p["backbone"], xd) @ p["heads"]["kernel"][0]
                        + p["heads"]["bias"][0], yd))

  g_val = _flat(jax.grad(lambda bb: dev({**params, "backbone": bb}))(params["backbone"]))
  g = [jax.grad(lambda p: task_loss(p, t, 1)[0])(params) for t in range(T)]
  a = np.array([_flat(x["backbone"]) @ g_val for x in g])
  assert (a > 0).sum() >= 2 and (a < 0).any(), "the fixture should have both signs"
  share = np.maximum(a, 0) / np.maximum(a, 0).sum()
  method = get_method("slgrad", T)
  for reps in (1, 3):
    per_sample = lambda p, r=reps: (jnp.stack([task_loss(p, t, r) for t in range(T)]), None)
    grads, _, _, _ = _run(method, params, LossFns(per_sample, dev), ())
    want = sum(share[t] * _flat(g[t]) for t in range(T)) / reps
    np.testing.assert_allclose(_flat(grads), want, rtol=1e-4, atol=1e-7)


def _attittud(params, **kw):
  return get_method("attittud", T, _partition(params), **kw)


def _basis_rows(basis):
  return np.asarray(ravel_tasks(basis)[0], np.float64)


def test_attittud_decomposition_against_numpy():
  params, losses, task_loss = _tiny()
  gs = _task_grads(params, task_loss)
  g = np.stack([_flat(x["backbone"]) for x in gs])
  heads = [x["heads"] for x in gs]
  heads_want = _wsum(heads, [1.0] * T)
  aux = g[1:].sum(0)

  # λ = (1, 1, 1): the three parts sum back to the auxiliary gradient, which alone is
  # the backbone's update by default (the original: the primary gradient reaches the
  # primary head only).
  method = _attittud(params, lambdas=(1.0, 1.0, 1.0))
  grads, _, _, metrics = _run(method, params, losses, method.init(None).state)
  np.testing.assert_allclose(_flat(grads["backbone"]), aux, rtol=1e-4, atol=1e-6)
  _close(grads["heads"], heads_want)
  np.testing.assert_allclose(metrics["weights"], np.ones(T - 1), rtol=1e-5)

  # num_basis > B: the basis is capped at B = 5 directions (rest zero) and spans the
  # per-example main gradients; λ = (1, 0, 0): the backbone gets exactly the part of
  # the auxiliary gradient outside the row space of J (NumPy projector, no basis).
  method = _attittud(params, num_basis=B + 2)
  grads, state, _, metrics = _run(method, params, losses, method.init(None).state)
  v = _basis_rows(state.basis)
  np.testing.assert_allclose(v[:B] @ v[:B].T, np.eye(B), atol=1e-5)
  np.testing.assert_array_equal(v[B:], 0.0)
  merge = lambda bb: {"backbone": bb, "heads": params["heads"]}
  jac = jax.jacrev(lambda bb: task_loss(merge(bb), 0))(params["backbone"])
  j = _basis_rows(jac)                                                # [B, D]
  np.testing.assert_allclose(j @ v.T @ v, j, atol=1e-5)
  out_of_span = aux - np.linalg.pinv(j) @ (j @ aux)
  np.testing.assert_allclose(_flat(grads["backbone"]), out_of_span, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(j @ _flat(grads["backbone"]), 0.0, atol=1e-5)
  # Heads: the main head its gradient, auxiliary heads λ⊥ (= 1) times theirs.
  _close(grads["heads"], heads_want)
  q = g[1:] @ v.T
  np.testing.assert_allclose(metrics["weights"],
                             1 - (q ** 2).sum(1) / (g[1:] ** 2).sum(1), rtol=1e-4)

  # General λ, a basis smaller than the span (k = 3 < B); body "sum" adds g*.
  lam = (0.5, 2.0, -1.0)
  method = _attittud(params, num_basis=3, lambdas=lam, body="sum")
  grads, state, _, metrics = _run(method, params, losses, method.init(None).state)
  v = _basis_rows(state.basis)
  np.testing.assert_allclose(v @ v.T, np.eye(3), atol=1e-5)
  p, p_star = v @ aux, v @ g[0]
  d = np.where(p * p_star > 0, lam[1], lam[2])
  assert (p * p_star > 0).any() or (p * p_star < 0).any()
  g_hat = lam[0] * (aux - v.T @ p) + v.T @ (d * p)
  np.testing.assert_allclose(_flat(grads["backbone"]), g[0] + g_hat, rtol=1e-4, atol=1e-6)
  _close(grads["heads"], heads_want)
  q = g[1:] @ v.T
  sq = (g[1:] ** 2).sum(1)
  want_w = (lam[0] * (sq - (q ** 2).sum(1)) + (d * q ** 2).sum(1)) / sq
  np.testing.assert_allclose(metrics["weights"], want_w, rtol=1e-4)

  # Default body with the same λ: ĝ alone; auxiliary heads scaled by λ⊥.
  method = _attittud(params, num_basis=3, lambdas=lam)
  grads, _, _, _ = _run(method, params, losses, method.init(None).state)
  np.testing.assert_allclose(_flat(grads["backbone"]), g_hat, rtol=1e-4, atol=1e-6)
  _close(grads["heads"], _wsum(heads, [1.0] + [lam[0]] * (T - 1)))

  # "multitask" with w = 3: the original's weights 1/(1+w) on ĝ, w/(1+w) on g*.
  w = 3.0
  method = _attittud(params, num_basis=3, lambdas=lam, body="multitask", primary_weight=w)
  grads, _, _, metrics = _run(method, params, losses, method.init(None).state)
  np.testing.assert_allclose(_flat(grads["backbone"]), (g_hat + w * g[0]) / (1 + w),
                             rtol=1e-4, atol=1e-6)
  _close(grads["heads"], _wsum(heads, [w / (1 + w)] + [lam[0] / (1 + w)] * (T - 1)))
  np.testing.assert_allclose(metrics["weights"], want_w / (1 + w), rtol=1e-4)


def test_attittud_main_samples_subsample_g_star():
  # g* (and the main head's gradient) from the last 2 of the B main examples.
  params, losses, task_loss = _tiny()
  m = 2
  g_sub = jax.grad(lambda p: jnp.mean(task_loss(p, 0)[B - m:]))(params)
  method = _attittud(params, num_basis=3, lambdas=(0.0, 0.0, 1.0), main_samples=m,
                     main_draw="batch")
  grads, state, _, _ = _run(method, params, losses, method.init(None).state)
  v = _basis_rows(state.basis)
  gs = _task_grads(params, task_loss)
  aux = sum(_flat(x["backbone"]) for x in gs[1:])
  p, p_star = v @ aux, v @ _flat(g_sub["backbone"])
  # The subsample changes the split (else this test could not tell them apart).
  assert np.any((p * p_star > 0) != (p * (v @ _flat(gs[0]["backbone"])) > 0))
  np.testing.assert_allclose(_flat(grads["backbone"]), v.T @ (p * (p * p_star <= 0)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grads["heads"]["kernel"][0]),
                             np.asarray(g_sub["heads"]["kernel"][0]), rtol=1e-5, atol=1e-7)


def test_attittud_g_star_from_examples_independent_of_the_basis_batch():
  """main_draw="independent" (the default): g* and the main head's gradient come from
  `LossFns.main_fresh`'s examples, never from the batch that builds the basis; the
  basis and the auxiliary gradient are unchanged."""
  params, losses, task_loss = _tiny()
  m = 2
  xf = jax.random.normal(jax.random.key(7), (m, D)) - 0.5   # other examples
  yf = jnp.asarray([1, 0])

  def fresh_loss(p):
    h = jnp.tanh(xf @ p["backbone"]["l1"]["kernel"] + p["backbone"]["l1"]["bias"])
    h = jnp.tanh(h @ p["backbone"]["l2"]["kernel"] + p["backbone"]["l2"]["bias"])
    logits = h @ p["heads"]["kernel"][0] + p["heads"]["bias"][0]
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), yf[:, None], 1)[:, 0]

  calls = []

  def main_fresh(p, n):
    calls.append(n)
    return fresh_loss(p), None

  fresh = losses._replace(main_fresh=main_fresh)
  g_fresh = jax.grad(lambda p: jnp.mean(fresh_loss(p)))(params)
  lam = (0.0, 0.0, 1.0)
  method = _attittud(params, num_basis=3, lambdas=lam, main_samples=m)
  grads, state, _, _ = _run(method, params, fresh, method.init(None).state)
  assert calls and set(calls) == {m}
  v = _basis_rows(state.basis)
  # The basis is the batch's (the same as with the in-batch draw).
  batch_method = _attittud(params, num_basis=3, lambdas=lam, main_samples=m,
                           main_draw="batch")
  _, state_b, _, _ = _run(batch_method, params, losses, batch_method.init(None).state)
  np.testing.assert_allclose(v, _basis_rows(state_b.basis), atol=1e-6)
  gs = _task_grads(params, task_loss)
  aux = sum(_flat(x["backbone"]) for x in gs[1:])
  p, p_star = v @ aux, v @ _flat(g_fresh["backbone"])
  np.testing.assert_allclose(_flat(grads["backbone"]), v.T @ (p * (p * p_star <= 0)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grads["heads"]["kernel"][0]),
                             np.asarray(g_fresh["heads"]["kernel"][0]), rtol=1e-5,
                             atol=1e-7)
  # The auxiliary heads are unchanged by the draw (λ⊥ = 0 here: zero either way).
  np.testing.assert_array_equal(np.asarray(grads["heads"]["kernel"][1:]), 0.0)
  # Without main_fresh the independent draw is refused (never a silent overlap).
  with pytest.raises(ValueError, match="main_fresh"):
    _run(method, params, losses, method.init(None).state)


def test_attittud_refreshes_the_basis_exactly_every_pca_every_steps():
  pca_every = 3
  params, _, _ = _tiny()
  method = _attittud(params, num_basis=2, pca_every=pca_every)
  state = method.init(None).state
  previous = _basis_rows(state.basis)
  np.testing.assert_array_equal(previous, 0.0)
  for step in range(7):
    _, losses, task_loss = _tiny(shift=0.2 * step)
    key = jax.random.fold_in(jax.random.key(3), step)
    grads, state, _, metrics = _run(method, params, losses, state, key)
    now = _basis_rows(state.basis)
    refreshed = step % pca_every == 0
    assert float(metrics["basis_refreshed"]) == float(refreshed)
    if refreshed:
      merge = lambda bb: {"backbone": bb, "heads": params["heads"]}
      want = subspace_basis(lambda bb: task_loss(merge(bb), 0), params["backbone"], key, 2)
      np.testing.assert_allclose(now, _basis_rows(want), atol=1e-5)
      assert not np.allclose(now, previous, atol=1e-3)
    else:
      np.testing.assert_array_equal(now, previous)
    previous = now
    params = _sgd(params, grads)


def test_option_errors():
  params, _, _ = _tiny()
  with pytest.raises(ValueError, match="num_basis"):
    _attittud(params, num_basis=10_000)
  with pytest.raises(ValueError, match="lambdas"):
    _attittud(params, lambdas=(1.0, 0.0))
  with pytest.raises(ValueError, match="body"):
    _attittud(params, body="both")
  with pytest.raises(ValueError, match="primary_weight"):
    _attittud(params, body="multitask", primary_weight=0.0)
  with pytest.raises(ValueError, match="attittud needs a partition"):
    get_method("attittud", T)
  with pytest.raises(ValueError, match="c >= 0"):
    get_method("cagrad", T, c=-1.0)
  with pytest.raises(ValueError, match="every_n"):
    get_method("olaux", T, every_n=0)
  with pytest.raises(ValueError, match="at least one auxiliary"):
    get_method("slgrad", 1)
  with pytest.raises(ValueError, match="scale"):
    get_method("slgrad", T, scale="mean")


@pytest.fixture(scope="module")
def digits():
  from aux_jax.data import get_dataset
  return get_dataset("digits", n_aux_digit=64, n_aux_parity=64, n_aux_ge5=64,
                     n_aux_random=64)


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "gradnorm", "olaux", "slgrad",
                                  "attittud"])
def test_three_trainer_steps(name, digits):
  from aux_jax.train.experiment import build_experiment
  from configs import maoal_digits

  c = maoal_digits.get_config(name)
  c.model.kwargs = {"width": 4, "features": 8}
  exp = build_experiment(c, digits)
  state = exp.init()
  start = state.params
  for step in range(3):
    state, metrics = exp.lower_step(state)
    assert np.isfinite(float(metrics["loss_main"])), (name, step)
    assert np.isfinite(float(metrics["loss_aux_mean"])), (name, step)
    weights = np.asarray(metrics["weights"])
    assert weights.shape == (digits.num_tasks - 1,) and np.all(np.isfinite(weights))
    # The method's direction itself is non-zero (weight decay alone also moves θ).
    assert 0 < float(metrics["grad_norm"]) < np.inf, (name, step)
    if name == "attittud":
      assert float(metrics["basis_refreshed"]) == float(step == 0)
  moved = [not np.allclose(a, b) for a, b in
           zip(jax.tree.leaves(start["backbone"]), jax.tree.leaves(state.params["backbone"]))]
  assert any(moved), name
  assert int(state.step) == 3
