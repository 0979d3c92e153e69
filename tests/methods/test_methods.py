"""Each method's lower direction against a direct computation on a tiny model, and the
MAOAL hypergradient against the implicit-function formula with dense Hessians."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from aux_jax.auxnets import get_auxnet
from aux_jax.hypergrad import implicit_hypergradient
from aux_jax.methods import LossFns, TaskSpec, get_method
from aux_jax.methods.maoal import module_names as maoal_module_names
from aux_jax.methods.maoal import weights_used as maoal_weights_used
from aux_jax.partition import make_partition

T, B, D, F, C = 4, 5, 3, 4, 3  # tasks, batch, inputs, features, classes


def _tiny(dtype=jnp.float32, l2=0.0, heads=tuple(range(T))):
  """A 2-layer shared MLP (two modules) with per-task heads (task t through head
  ``heads[t]``); each task its own batch."""
  ks = jax.random.split(jax.random.key(0), 8)
  n = lambda k, s: jax.random.normal(k, s, dtype) * 0.7
  params = {
      "backbone": {"l1": {"kernel": n(ks[0], (D, F)), "bias": n(ks[1], (F,))},
                   "l2": {"kernel": n(ks[2], (F, F)), "bias": n(ks[3], (F,))}},
      "heads": {"kernel": n(ks[4], (T, F, C)), "bias": n(ks[5], (T, C))},
  }
  x = jax.random.normal(ks[6], (T, B, D), dtype)
  y = jax.random.randint(ks[7], (T, B), 0, C)
  xd = x[0] + 0.1

  def features(bb, inputs):
    h = jnp.tanh(inputs @ bb["l1"]["kernel"] + bb["l1"]["bias"])
    return jnp.tanh(h @ bb["l2"]["kernel"] + bb["l2"]["bias"])

  def task_loss(p, t):  # f32[B]; the L2 term makes the Hessians positive definite
    h = heads[t]
    logits = features(p["backbone"], x[t]) @ p["heads"]["kernel"][h] + p["heads"]["bias"][h]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[t][:, None], 1)[:, 0]
    return nll + 0.5 * l2 * sum(jnp.sum(v ** 2) for v in jax.tree.leaves(p["backbone"]))

  def per_sample(p):
    return jnp.stack([task_loss(p, t) for t in range(T)]), None

  def dev(p):
    logits = features(p["backbone"], xd) @ p["heads"]["kernel"][0] + p["heads"]["bias"][0]
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), y[0][:, None], 1))

  mean_loss = lambda p, t: jnp.mean(task_loss(p, t))
  return params, LossFns(per_sample, dev), mean_loss


def _task_grads(params, mean_loss):
  return [jax.grad(mean_loss)(params, t) for t in range(T)]


def _partition(params):
  return make_partition(params["backbone"], "module_wise", (("m1", "^l1/"), ("m2", "^l2/")))


def _direction(name, params, losses, phi=None, **kw):
  method = get_method(name, T, _partition(params), **kw)
  mstate = method.init(jax.random.key(1))
  phi = mstate.phi if phi is None else phi
  grads, _, _, metrics = method.direction(params, phi, mstate.state, losses,
                                          jax.random.key(2))
  return grads, metrics


def _close(a, b):
  np.testing.assert_allclose(ravel_pytree(a)[0], ravel_pytree(b)[0], rtol=1e-5, atol=1e-6)


def _wsum(gs, w):
  return jax.tree.map(lambda *leaves: sum(wi * l for wi, l in zip(w, leaves)), *gs)


def test_sll_equal_unif():
  params, losses, mean_loss = _tiny()
  gs = _task_grads(params, mean_loss)
  _close(_direction("stl", params, losses)[0], gs[0])
  _close(_direction("equal", params, losses)[0], _wsum(gs, [1.0] * T))
  _close(_direction("unif", params, losses)[0], _wsum(gs, [1.0 / T] * T))


def test_fixed_weights_are_the_given_ones():
  params, losses, mean_loss = _tiny()
  gs = _task_grads(params, mean_loss)
  w = [0.5, 0.0, 2.0]
  g, metrics = _direction("fixed", params, losses, weights=w)
  _close(g, _wsum(gs, [1.0] + w))
  np.testing.assert_array_equal(metrics["weights"], w)
  for bad in (None, [1.0, 1.0], [1.0, -1.0, 1.0]):
    with pytest.raises(ValueError, match="weights"):
      get_method("fixed", T, weights=bad)


def test_gcs_adds_only_agreeing_auxiliary_gradients():
  params, losses, mean_loss = _tiny()
  gs = _task_grads(params, mean_loss)
  flat = [ravel_pytree(g["backbone"])[0] for g in gs]
  cos = [float(flat[0] @ f / np.linalg.norm(flat[0]) / np.linalg.norm(f)) for f in flat[1:]]
  keep = [1.0] + [float(c > 0) for c in cos]
  assert 0 < sum(keep[1:]) < T - 1, "the fixture should have agreeing and conflicting tasks"
  grads, metrics = _direction("gcs", params, losses)
  _close(grads["backbone"], _wsum([g["backbone"] for g in gs], keep))
  _close(grads["heads"], _wsum([g["heads"] for g in gs], [1.0] * T))
  np.testing.assert_array_equal(metrics["weights"], keep[1:])


def test_maoal_module_wise_direction():
  params, losses, mean_loss = _tiny()
  gs = _task_grads(params, mean_loss)
  w = jnp.array([[1.5, -0.3], [0.2, 0.7], [-1.0, 2.0]])  # [K, M], ω = ReLU(W)
  grads, metrics = _direction("maoal", params, losses, phi=w)
  omega, k = np.maximum(np.asarray(w), 0), T - 1
  for m, name in enumerate(("l1", "l2")):
    coeff = [1.0] + [omega[j, m] / k for j in range(k)]
    _close(grads["backbone"][name], _wsum([g["backbone"][name] for g in gs], coeff))
  _close(grads["heads"], _wsum([g["heads"] for g in gs], [1.0] + [1.0 / k] * k))
  np.testing.assert_allclose(metrics["weights"], omega)


def test_maoal_weights_the_main_head_where_auxiliary_tasks_share_it():
  # Tasks 1 and 3 are trained through the main head (more labels of the main task),
  # task 2 through its own: W gets a main_head column, used for tasks 1 and 3 only.
  heads = (0, 0, 2, 0)
  params, losses, mean_loss = _tiny(heads=heads)
  gs = _task_grads(params, mean_loss)
  w = jnp.array([[1.5, -0.3, 0.4], [0.2, 0.7, 5.0], [-1.0, 2.0, -0.5]])  # [K, M + 1]
  grads, metrics = _direction("maoal", params, losses, phi=w,
                              tasks=TaskSpec(("t",) * T, ("c",) * T, (C,) * T, (D,), heads))
  omega, k = np.maximum(np.asarray(w), 0), T - 1
  for m, name in enumerate(("l1", "l2")):
    coeff = [1.0] + [omega[j, m] / k for j in range(k)]
    _close(grads["backbone"][name], _wsum([g["backbone"][name] for g in gs], coeff))
  head_coeff = [1.0, omega[0, 2] / k, 1.0 / k, omega[2, 2] / k]  # task 2: its own head
  _close(grads["heads"], _wsum([g["heads"] for g in gs], head_coeff))
  logged = omega.copy()
  logged[1, 2] = 1.0  # unused: task 2 does not share the main head
  np.testing.assert_allclose(metrics["weights"], logged)
  method = get_method("maoal", T, _partition(params),
                      tasks=TaskSpec(("t",) * T, ("c",) * T, (C,) * T, (D,), heads))
  assert method.init(None).phi.shape == (T - 1, 3) and method.hyper_wrt == "main_head"
  assert maoal_module_names(_partition(params), T, heads) == ("m1", "m2", "main_head")
  np.testing.assert_array_equal(maoal_weights_used(_partition(params), T, heads),
                                [[1, 1, 1], [1, 1, 0], [1, 1, 1]])
  own = get_method("maoal", T, _partition(params))
  assert own.init(None).phi.shape == (T - 1, 2) and own.hyper_wrt == "shared"


def test_auxl_is_the_chain_rule_through_the_auxiliary_network():
  params, losses, mean_loss = _tiny()
  gs = _task_grads(params, mean_loss)
  method = get_method("auxl", T)
  phi = method.init(jax.random.key(3)).phi
  grads, _, _, metrics = method.direction(params, phi, (), losses, jax.random.key(2))
  net = get_auxnet("nonlinear", T, monotone=True, hidden=(5, 5)).module
  task_losses = jnp.stack([mean_loss(params, t) for t in range(T)])
  dg = jax.grad(lambda l: net.apply({"params": phi}, l[None]))(task_losses)
  _close(grads, _wsum(gs, list(np.asarray(dg))))
  np.testing.assert_allclose(metrics["weights"], dg[1:], rtol=1e-5)
  assert np.all(np.asarray(dg) >= 0)  # monotone network


def test_unknown_method_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown method 'maol'"):
    get_method("maol", T)


def test_maoal_hypergradient_matches_dense_ift_formula():
  """dL/dW_{k,m} = −(1/K)·1[W>0]·⟨∇_{θ_m}ℓ_k, p_m⟩ with Jᵀp = v₀ and J = Σ_t D_t H_t."""
  with jax.enable_x64(True):
    params, losses, mean_loss = _tiny(jnp.float64, l2=1.0)
    method = get_method("maoal", T, _partition(params))
    w = jnp.array([[1.5, -0.3], [0.2, 0.7], [0.9, 2.0]], jnp.float64)
    heads = params["heads"]
    merge = lambda bb: {"backbone": bb, "heads": heads}
    g = lambda bb, phi: method.direction(merge(bb), phi, (), losses, None)[0]["backbone"]
    val = lambda bb: losses.dev(merge(bb))
    hg_exact, info = implicit_hypergradient(g, val, params["backbone"], w, solver="exact")
    assert not bool(info.diverged)

    # Dense reference from per-task Hessians of the shared parameters.
    flat, unravel = ravel_pytree(params["backbone"])
    module_of = np.concatenate([np.full(D * F + F, 0), np.full(F * F + F, 1)])
    assert [k for k in unravel(flat)] == ["l1", "l2"]  # ravel order: l1 then l2
    lt = lambda t: (lambda v: mean_loss(merge(unravel(v)), t))
    hess = [np.asarray(jax.hessian(lt(t))(flat)) for t in range(T)]
    grads = [np.asarray(jax.grad(lt(t))(flat)) for t in range(T)]
    k = T - 1
    omega = np.maximum(np.asarray(w), 0)
    scale = [np.ones_like(flat)] + [omega[j][module_of] / k for j in range(k)]
    jac = sum(np.diag(scale[t]) @ hess[t] for t in range(T))
    v0 = np.asarray(jax.grad(lambda v: val(unravel(v)))(flat))
    p = np.linalg.solve(jac.T, v0)
    want = np.zeros((k, 2))
    for j in range(k):
      for m in range(2):
        sel = module_of == m
        want[j, m] = -float(w[j, m] > 0) / k * grads[j + 1][sel] @ p[sel]
    np.testing.assert_allclose(np.asarray(hg_exact), want, rtol=1e-6, atol=1e-10)
    assert np.all(np.asarray(hg_exact)[np.asarray(w) <= 0] == 0)

    # The Neumann estimator converges to it (scaled, many terms).
    eig = np.linalg.eigvals(jac)
    assert eig.real.min() > 0
    alpha = float((eig.real / np.abs(eig) ** 2).min())
    hg_neumann, _ = jax.jit(lambda phi: implicit_hypergradient(
        g, val, params["backbone"], phi, neumann_steps=3000, step=alpha))(w)
    np.testing.assert_allclose(np.asarray(hg_neumann), want, rtol=1e-4, atol=1e-7)


def test_per_task_grads_fast_path_matches_reference_on_the_trainer_losses():
  """One backward pass over per-task parameter copies (SmallCNN, per-chunk BatchNorm)."""
  from aux_jax.data import get_dataset
  from aux_jax.methods.base import per_task_grads, per_task_grads_reference
  from aux_jax.train.experiment import build_experiment
  from configs import maoal_digits

  c = maoal_digits.get_config()
  c.model.kwargs = {"width": 4, "features": 8}
  exp = build_experiment(c, get_dataset("digits", n_aux_digit=64, n_aux_parity=64,
                                        n_aux_ge5=64, n_aux_random=64))
  state = exp.init()
  losses = exp.losses_at(state, 3)
  assert losses.per_task is not None
  fast, fast_losses, fast_stats = jax.jit(lambda p: per_task_grads(losses, p))(state.params)
  ref, ref_losses, ref_stats = jax.jit(
      lambda p: per_task_grads_reference(losses, p))(state.params)
  np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  for a, b in zip(jax.tree.leaves(fast_stats), jax.tree.leaves(ref_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
