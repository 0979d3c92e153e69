"""Tests for aux_jax.auxnets: shapes, exact forward math, monotone projection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import auxnets

T = 3


def _losses(key, shape):
  return jax.random.uniform(key, shape, minval=0.0, maxval=2.0)


def _randomize(params, key):
  """Replaces every leaf with N(-0.3, 1) values (so many weights are negative)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
      treedef, [jax.random.normal(k, x.shape) - 0.3 for k, x in zip(keys, leaves)])


def _np_wn(layer):
  v = np.asarray(layer["wn"]["kernel"], np.float64)
  g = np.asarray(layer["wn"]["scale"], np.float64)
  axes = tuple(range(v.ndim - 1))
  return g * v / np.sqrt((v ** 2).sum(axis=axes)), np.asarray(layer["bias"])


def _np_softplus(x):
  return np.logaddexp(0.0, x)


NETS = {
    "linear": (dict(), (8, T)),
    "linear_skip": (dict(skip_main=True), (8, T)),
    "linear_fix": (dict(fix_main=True), (8, T)),
    "nonlinear": (dict(hidden=(5, 4)), (8, T)),
    "deep_linear": (dict(hidden=(5,)), (8, T)),
    "conv": (dict(hidden=(4, 3), kernel_sizes=(1, 3)), (2, 6, 5, T)),
}


def _build(case, monotone=False):
  kwargs, shape = NETS[case]
  name = "linear" if case.startswith("linear") else case
  return auxnets.get_auxnet(name, T, monotone=monotone, **kwargs), shape


@pytest.mark.parametrize("case", sorted(NETS))
def test_output_is_scalar_and_finite(case):
  net, shape = _build(case)
  x = _losses(jax.random.key(0), shape)
  variables = jax.jit(net.module.init)(jax.random.key(1), x)
  out = jax.jit(net.module.apply)(variables, x)
  assert out.shape == () and np.isfinite(out)
  # Per-sample nets also accept any leading shape: mean over all leading axes.
  if case != "conv":
    out3 = net.module.apply(variables, x.reshape(2, 4, T))
    np.testing.assert_allclose(out3, out, rtol=1e-6)


@pytest.mark.parametrize("case", sorted(NETS))
def test_wrong_number_of_tasks_raises(case):
  net, shape = _build(case)
  x = _losses(jax.random.key(0), shape[:-1] + (T + 1,))
  with pytest.raises(ValueError, match="num_tasks"):
    net.module.init(jax.random.key(1), x)


def test_linear_init_equals_sum_of_mean_losses():
  x = _losses(jax.random.key(0), (7, T))
  expected = np.asarray(x).mean(axis=0).sum()
  for fix in (False, True):
    net = auxnets.LinearAuxNet(T, fix_main=fix)
    variables = net.init(jax.random.key(1), x)
    assert variables["params"]["weights"].shape == ((T - 1,) if fix else (T,))
    np.testing.assert_allclose(net.apply(variables, x), expected, rtol=1e-6)


def test_linear_weighted_sum_and_skip():
  x = _losses(jax.random.key(0), (7, T))
  w = np.array([0.5, -2.0, 3.0], np.float32)
  means = np.asarray(x).mean(axis=0)
  net = auxnets.LinearAuxNet(T)
  np.testing.assert_allclose(
      net.apply({"params": {"weights": w}}, x), (w * means).sum(), rtol=1e-5)
  fix = auxnets.LinearAuxNet(T, fix_main=True)
  np.testing.assert_allclose(
      fix.apply({"params": {"weights": w[1:]}}, x),
      means[0] + (w[1:] * means[1:]).sum(), rtol=1e-5)
  # AuxiLearn's skip: learnable w ∈ R^T plus the mean main loss; the main loss's
  # effective weight is w_0 + 1 (2 at init).
  skip = auxnets.LinearAuxNet(T, skip_main=True)
  np.testing.assert_allclose(
      skip.apply({"params": {"weights": w}}, x), (w * means).sum() + means[0], rtol=1e-5)
  init = skip.init(jax.random.key(1), x)
  eff = jax.grad(lambda v: skip.apply(init, v))(x).sum(axis=0)
  np.testing.assert_allclose(eff, [2.0, 1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("activation", ["softplus", "identity"])
def test_nonlinear_matches_numpy(activation):
  x = _losses(jax.random.key(0), (6, T))
  net = auxnets.NonlinearAuxNet(T, hidden=(5, 4), activation=activation)
  params = _randomize(jax.jit(net.init)(jax.random.key(1), x)["params"],
                      jax.random.key(2))
  act = _np_softplus if activation == "softplus" else (lambda z: z)
  h = np.asarray(x, np.float64)
  names = sorted(params, key=lambda n: int(n.split("_")[-1]))
  for name in names[:-1]:
    w, b = _np_wn(params[name])
    h = act(h @ w + b)
  w, b = _np_wn(params[names[-1]])
  expected = (h @ w + b).mean() + np.asarray(x)[:, 0].mean()
  np.testing.assert_allclose(
      jax.jit(net.apply)({"params": params}, x), expected, rtol=1e-4)


def test_weight_norm_init_starts_at_uniform_direction():
  x = _losses(jax.random.key(0), (4, T))
  params = auxnets.NonlinearAuxNet(T, hidden=(5,)).init(jax.random.key(1), x)["params"]
  for layer in params.values():
    v = np.asarray(layer["wn"]["kernel"])
    assert (v >= 0).all() and (v < 1).all() and v.std() > 0.1
    w, b = _np_wn(layer)
    np.testing.assert_allclose(w, v, rtol=1e-5)  # g = ‖v‖ at init
    np.testing.assert_array_equal(b, 0.0)


def test_conv_matches_numpy_and_mask():
  x = _losses(jax.random.key(0), (2, 5, 4, T))
  net = auxnets.ConvAuxNet(T, hidden=(3,), kernel_sizes=(3,))
  params = _randomize(jax.jit(net.init)(jax.random.key(1), x)["params"],
                      jax.random.key(2))
  xn = np.asarray(x, np.float64)
  w, b = _np_wn(params["_Conv_0"])
  padded = np.pad(xn, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h = np.zeros(xn.shape[:3] + (3,))
  for i in range(5):
    for j in range(4):
      h[:, i, j] = np.einsum("bhwc,hwco->bo", padded[:, i:i + 3, j:j + 3], w) + b
  h = _np_softplus(h)
  w, b = _np_wn(params["_Conv_1"])
  per_pixel = (h @ w + b)[..., 0] + xn[..., 0]
  variables = {"params": params}
  apply = jax.jit(net.apply)
  np.testing.assert_allclose(apply(variables, x), per_pixel.mean(), rtol=1e-4)
  mask = np.asarray(jax.random.bernoulli(jax.random.key(3), 0.5, (2, 5, 4)))
  np.testing.assert_allclose(
      apply(variables, x, mask), per_pixel[mask].mean(), rtol=1e-4)


@pytest.mark.parametrize("case", sorted(NETS))
def test_monotone_projection_makes_output_nondecreasing(case):
  net, shape = _build(case, monotone=True)
  assert net.projection is auxnets.monotone_projection
  x = _losses(jax.random.key(0), shape)
  variables = jax.jit(net.module.init)(jax.random.key(1), x)
  f = jax.jit(net.module.apply)
  df = jax.jit(jax.grad(f, argnums=1))
  # Random weights for which, before the projection, some loss increase decreases
  # the output (so the checks below can fail).
  for seed in range(2, 12):
    raw = _randomize(variables, jax.random.key(seed))
    if np.min(df(raw, x)) < 0:
      break
  else:
    pytest.fail("no random parameters with a negative input gradient")
  projected = net.projection(raw)
  original = dict(jax.tree_util.tree_leaves_with_path(raw))
  for path, leaf in jax.tree_util.tree_leaves_with_path(projected):
    name = path[-1].key
    if name in auxnets.MONOTONE_PARAM_NAMES:
      assert (np.asarray(leaf) >= 0).all()
    else:  # biases untouched
      assert name == "bias"
      np.testing.assert_array_equal(leaf, original[path])
  grads = df(projected, x)
  assert np.min(grads) >= 0
  # Finite increases of each loss never decrease the output.
  base = f(projected, x)
  for t in range(T):
    bumped = x.at[..., t].add(jax.random.uniform(jax.random.key(10 + t), x.shape[:-1]))
    assert f(projected, bumped) >= base - 1e-5


def test_projection_is_noop_at_init_and_keeps_structure():
  x = _losses(jax.random.key(0), (4, T))
  variables = auxnets.NonlinearAuxNet(T).init(jax.random.key(1), x)
  projected = auxnets.monotone_projection(variables["params"])
  assert jax.tree.structure(projected) == jax.tree.structure(variables["params"])
  jax.tree.map(np.testing.assert_array_equal, projected, variables["params"])


def test_registry():
  deep = auxnets.get_auxnet("deep_linear", T).module
  assert isinstance(deep, auxnets.NonlinearAuxNet) and deep.activation == "identity"
  assert auxnets.get_auxnet("conv", T).projection is None
  with pytest.raises(ValueError, match="unknown auxiliary network"):
    auxnets.get_auxnet("transformer", T)
  with pytest.raises(ValueError, match="deep_linear"):
    auxnets.get_auxnet("deep_linear", T, activation="softplus")
  with pytest.raises(ValueError, match="activation"):
    auxnets.NonlinearAuxNet(T, activation="relu").init(
        jax.random.key(0), jnp.ones((2, T)))
  with pytest.raises(ValueError, match="num_tasks"):
    auxnets.LinearAuxNet(1, fix_main=True).init(jax.random.key(0), jnp.ones((2, 1)))


AUXILEARN_CONV = dict(hidden=(8, 16), kernel_sizes=(3, 3), pool=2, init_bounds=(0.0, 0.1),
                      weight_norm=False, bias_out=False)


def _np_conv3x3(x, k, b):
  """Cross-correlation with zero padding 1, explicit loops. x [B,H,W,C], k [3,3,C,F]."""
  bsz, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = np.zeros((bsz, h, w, k.shape[-1]))
  for i in range(3):
    for j in range(3):
      y += np.einsum("bhwc,cf->bhwf", xp[:, i:i + h, j:j + w], k[i, j])
  return y + b


def _np_pool2(x):
  b, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_auxilearn_conv_net_shapes_init_and_effective_weights():
  """The original's NYUv2 ConvNet: 3×3 3→8 (+bias) → Softplus → avg-pool 2, 3×3 8→16
  (+bias) → Softplus → avg-pool 2, 1×1 16→1 (no bias); U(0, 0.1), no weight norm;
  L = mean o + mean ℓ_main. Forward and ∂L/∂ℓ against NumPy."""
  net = auxnets.ConvAuxNet(T, **AUXILEARN_CONV)
  x = _losses(jax.random.key(0), (2, 8, 12, T))
  params = net.init(jax.random.key(1), x)["params"]
  shapes = jax.tree.map(jnp.shape, params)
  assert shapes == {"_Conv_0": {"wn": {"kernel": (3, 3, 3, 8)}, "bias": (8,)},
                    "_Conv_1": {"wn": {"kernel": (3, 3, 8, 16)}, "bias": (16,)},
                    "_Conv_2": {"wn": {"kernel": (1, 1, 16, 1)}}}
  assert sum(np.size(l) for l in jax.tree.leaves(params)) == 216 + 8 + 1152 + 16 + 16
  for name in ("_Conv_0", "_Conv_1", "_Conv_2"):
    k = np.asarray(params[name]["wn"]["kernel"])
    assert k.min() >= 0 and k.max() <= 0.1 and k.std() > 0.01
  for name in ("_Conv_0", "_Conv_1"):
    np.testing.assert_array_equal(params[name]["bias"], 0.0)
  params = _randomize(params, jax.random.key(2))  # biases and weights non-trivial

  def np_forward(v):
    h = v
    for name in ("_Conv_0", "_Conv_1"):
      h = _np_pool2(_np_softplus(_np_conv3x3(
          h, np.asarray(params[name]["wn"]["kernel"], np.float64),
          np.asarray(params[name]["bias"], np.float64))))
    o = h @ np.asarray(params["_Conv_2"]["wn"]["kernel"], np.float64)[0, 0]  # [B,2,3,1]
    assert o.shape == (2, 2, 3, 1)
    return o.mean() + v[..., 0].mean()

  xn = np.asarray(x, np.float64)
  np.testing.assert_allclose(net.apply({"params": params}, x), np_forward(xn), rtol=1e-4)
  # Effective per-pixel weights ∂L/∂ℓ: central differences of the NumPy forward.
  eff = np.asarray(jax.grad(lambda v: net.apply({"params": params}, v))(x))
  rng = np.random.default_rng(0)
  for _ in range(6):
    idx = tuple(int(rng.integers(n)) for n in x.shape)
    e = np.zeros_like(xn)
    e[idx] = 1e-4
    fd = (np_forward(xn + e) - np_forward(xn - e)) / 2e-4
    np.testing.assert_allclose(eff[idx], fd, rtol=1e-3, atol=1e-6)
  # At init (weights ≥ 0): every effective weight is positive, and the main channel
  # carries the skip term 1/(B·H·W) per pixel on top of the network's.
  init = net.init(jax.random.key(1), x)
  eff0 = np.asarray(jax.grad(lambda v: net.apply(init, v))(x))
  assert (eff0 > 0).all()
  no_skip = auxnets.ConvAuxNet(T, skip_main=False, **AUXILEARN_CONV)
  eff0_ns = np.asarray(jax.grad(lambda v: no_skip.apply(init, v))(x))
  np.testing.assert_allclose(eff0[..., 0] - eff0_ns[..., 0], 1 / x[..., 0].size, rtol=1e-4)
  np.testing.assert_allclose(eff0[..., 1:], eff0_ns[..., 1:], rtol=1e-6)
