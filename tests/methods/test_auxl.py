"""AuxL through every auxiliary network: the direction is the chain rule through g_φ on
per-sample / per-pixel losses, and its implicit hypergradient equals the dense IFT
formula −(∂_φ∇_θ L_T)ᵀ H⁻¹ ∇_θ L_dev with the Hessian inverted."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from aux_jax.hypergrad import implicit_hypergradient
from aux_jax.methods import LossFns, get_method

T, B, D, HW = 3, 4, 3, 2  # tasks, batch, input dim, pixels per side


def _problem(dtype):
  """Shared inputs; task t's per-pixel loss is a smooth function of a linear model."""
  ks = jax.random.split(jax.random.key(0), 4)
  params = {"backbone": {"w": jax.random.normal(ks[0], (D, T), dtype) * 0.5},
            "heads": {"b": jax.random.normal(ks[1], (T,), dtype) * 0.1}}
  x = jax.random.normal(ks[2], (B, HW, HW, D), dtype)
  y = jax.random.normal(ks[3], (T, B, HW, HW), dtype)
  valid = jnp.ones((T, B, HW, HW), dtype).at[1, 0, 0, 0].set(0.0)

  def maps(p):
    z = jnp.einsum("bhwd,dt->tbhw", x, p["backbone"]["w"]) + p["heads"]["b"][:, None, None, None]
    l2 = 0.5 * sum(jnp.sum(v ** 2) for v in jax.tree.leaves(p))
    return (jnp.square(z - y) + l2) * valid  # l2: a positive definite Hessian

  def per_pixel(p):
    return maps(p), valid, None

  def per_sample(p):
    m = maps(p)
    return jnp.sum(m, (2, 3)) / jnp.sum(valid, (2, 3)), None

  def dev(p):
    z = jnp.einsum("bhwd,d->bhw", x + 0.3, p["backbone"]["w"][:, 0]) + p["heads"]["b"][0]
    return jnp.mean(jnp.square(z - 1.0))

  return params, LossFns(per_sample, dev, per_pixel=per_pixel)


CASES = [
    dict(net="linear", inputs="sample", monotone=True),
    dict(net="nonlinear", inputs="sample", hidden=(3,)),
    dict(net="deep_linear", inputs="sample", hidden=(3,)),
    dict(net="nonlinear", inputs="batch", hidden=(5, 5)),
    dict(net="conv", inputs="pixel", hidden=(2,), kernel_sizes=(3,)),
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: f"{kw['net']}-{kw['inputs']}")
def test_hypergradient_through_the_auxiliary_network_matches_exact(kw):
  with jax.enable_x64(True):
    params, losses = _problem(jnp.float64)
    method = get_method("auxl", T, **kw)
    phi = jax.tree.map(lambda v: v.astype(jnp.float64), method.init(jax.random.key(1)).phi)
    # Move φ off its initial value so nothing is special about it.
    phi = jax.tree.map(lambda v: v + 0.1 * jnp.arange(v.size, dtype=v.dtype).reshape(v.shape)
                       / max(v.size, 1), phi)
    g = lambda th, ph: method.direction(th, ph, (), losses, None)[0]
    hg, info = implicit_hypergradient(g, losses.dev, params, phi, solver="exact")
    assert not bool(info.diverged)

    flat, unravel = ravel_pytree(params)
    pflat, punravel = ravel_pytree(phi)
    grad_flat = lambda th, ph: ravel_pytree(g(unravel(th), punravel(ph)))[0]
    hess = np.asarray(jax.jacobian(grad_flat, 0)(flat, pflat))
    cross = np.asarray(jax.jacobian(grad_flat, 1)(flat, pflat))  # [dθ, dφ]
    v0 = np.asarray(jax.grad(lambda th: losses.dev(unravel(th)))(flat))
    want = -cross.T @ np.linalg.solve(hess, v0)
    np.testing.assert_allclose(np.asarray(ravel_pytree(hg)[0]), want, rtol=1e-6, atol=1e-10)
    assert np.abs(want).max() > 1e-6  # the test is not vacuous


def test_sample_inputs_are_the_chain_rule_through_the_network():
  params, losses = _problem(jnp.float32)
  method = get_method("auxl", T, net="nonlinear", inputs="sample", hidden=(3,))
  phi = method.init(jax.random.key(1)).phi
  grads, _, _, metrics = method.direction(params, phi, (), losses, None)
  net = method  # the direction is ∇_θ g_φ(ℓ(θ)) with ℓ per sample f32[B, T]
  from aux_jax.auxnets import get_auxnet
  module = get_auxnet("nonlinear", T, monotone=True, hidden=(3,)).module
  want = jax.grad(lambda p: module.apply({"params": phi}, losses.per_sample(p)[0].T))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  dl = jax.grad(lambda l: module.apply({"params": phi}, l))(losses.per_sample(params)[0].T)
  np.testing.assert_allclose(metrics["weights"], np.asarray(dl).sum(0)[1:], rtol=1e-5)
  del net


def test_bad_combinations_are_clear_errors():
  with pytest.raises(ValueError, match="net='conv' goes with inputs='pixel'"):
    get_method("auxl", T, net="conv", inputs="sample")
  with pytest.raises(ValueError, match="inputs must be one of"):
    get_method("auxl", T, inputs="pixels")
  params, losses = _problem(jnp.float32)
  method = get_method("auxl", T, net="conv", inputs="pixel", hidden=(2,), kernel_sizes=(1,))
  with pytest.raises(ValueError, match="needs per-pixel losses"):
    method.direction(params, method.init(jax.random.key(0)).phi, (),
                     losses._replace(per_pixel=None), None)


def test_hyper_wrt_option_and_maoal_configs_use_shared():
  """MAOAL's AuxL passes only the shared parameters to its meta optimizer and decays φ
  by 5e-4; AuxiLearn's own trainers use all parameters. On digits the main head is
  shared too (aux_digit and aux_random train through it), and ``auxl`` takes the
  config's upper level; ``auxl_original`` is AuxL as the MAOAL paper runs it."""
  from configs import maoal_cifar100_20, maoal_digits
  assert get_method("auxl", T).hyper_wrt == "all"
  assert get_method("auxl", T, hyper_wrt="shared").hyper_wrt == "shared"
  assert get_method("auxl", T, hyper_wrt="main_head").hyper_wrt == "main_head"
  with pytest.raises(ValueError, match="hyper_wrt"):
    get_method("auxl", T, hyper_wrt="heads")
  for name in ("auxl", "auxl_original"):
    c = maoal_cifar100_20.get_config(name)
    assert c.method.name == "auxl" and c.method.kwargs.hyper_wrt == "shared"
    assert (c.hyper.optimizer, c.hyper.lr, c.hyper.weight_decay) == ("sgd", 1e-3, 5e-4)
  original = maoal_digits.get_config("auxl_original")
  assert original.method.kwargs.hyper_wrt == "main_head"
  assert (original.hyper.optimizer, original.hyper.lr) == ("sgd", 1e-3)
  assert original.hyper.solver_kwargs.neumann.step == 1e-4
  ours, maoal = maoal_digits.get_config("auxl"), maoal_digits.get_config("maoal")
  assert ours.method.kwargs.to_dict() == original.method.kwargs.to_dict()
  assert ours.hyper.lr == maoal_digits.UPPER_LR["auxl"]
  ours.hyper.lr = maoal.hyper.lr  # otherwise MAOAL's upper level
  assert ours.hyper.to_dict() == maoal.hyper.to_dict()
