"""The upper step's batch options (hyper.dev_bn, hyper.train_term, data.augment_dev),
the original MAOAL's head indexing (model.aux_heads) and PyTorch's default
initialisation (model.init, model.head_init): each changes what it says and nothing
else; batch statistics checked against NumPy on the first BatchNorm layer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import losses as task_losses
from aux_jax.data import augment, sampler
from aux_jax.methods import base
from aux_jax.models import get_backbone
from aux_jax.models import init as model_init
from aux_jax.train import problems
from aux_jax.train.experiment import build_experiment, load_data
from tests.train import tiny_configs

STEP = 5
M = 0.9  # BatchNorm momentum (Flax's; PyTorch's 0.1)


def _config(case="maoal", **opts):
  """The tiny config with the library's defaults, then ``opts`` ("section.field")."""
  c = tiny_configs.get_config(case)
  c.hyper.dev_bn, c.hyper.train_term, c.data.augment_dev = "eval", "lower", False
  c.model.init = c.model.head_init = "flax"
  c.model.aux_heads = "own"
  c.data.kwargs.share_main_head = False  # every task its own head
  for path, value in opts.items():
    section, field = path.split("__")
    c[section][field] = value
  return c


@pytest.fixture(scope="module")
def datasets():
  out = {case: load_data(_config(case)) for case in ("maoal", "taskgen")}
  shared = _config()
  shared.data.kwargs.share_main_head = True  # the digits default (aux_jax.data.digits)
  out["shared"] = load_data(shared)
  return out


def _problem(datasets, case="maoal", data="", **opts):
  c = _config(case, **opts)
  backbone = get_backbone(c.model.name, **dict(c.model.kwargs))
  keys = problems.Keys(*jax.random.split(jax.random.key(c.seed), 4))
  prob = problems.build_problem(c, datasets[data or case], backbone, jnp.float32, keys)
  params = {"backbone": prob.variables["params"],
            "heads": prob.init_heads(jax.random.key(1))}
  # Running statistics off their initial values, so that folds are visible.
  stats = jax.tree.map(lambda a: a + 0.3, prob.variables["batch_stats"])
  return c, keys, prob, params, stats


def _conv_same(x, k):
  """NumPy 3×3 'SAME' convolution: x [B, H, W, C], k [3, 3, C, F] -> [B, H, W, F]."""
  x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
  h, w = x.shape[1:3]
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(xp[:, dy:dy + h, dx:dx + w] @ k[dy, dx] for dy in range(3) for dx in range(3))


def _first_bn_batch_stats(params, images):
  """Batch mean and biased variance of the first BatchNorm's input (block1's conv)."""
  z = _conv_same(images, params["backbone"]["block1"]["conv"]["kernel"])
  z = z.reshape(-1, z.shape[-1])
  return z.mean(0), z.var(0)


def _dev_images(c, keys, data, step, augmented):
  didx = sampler.pool_batch_indices(keys.dev, step, len(data.dev_labels),
                                    c.data.dev_batch_size)
  raw = jnp.asarray(data.dev_images)[didx]
  if augmented:
    raw = augment.random_crop_flip(problems.upper_keys(keys.step, step)[2], raw,
                                   pad=c.data.crop_pad)
  return np.asarray(data.preprocess(raw)), np.asarray(data.dev_labels)[didx]


def _close(a, b):
  return all(jax.tree.leaves(jax.tree.map(
      lambda x, y: np.allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6), a, b)))


def test_dev_bn_train_uses_batch_statistics_and_folds_the_dev_batch(datasets):
  c, keys, p_eval, params, stats = _problem(datasets)
  _, _, p_train, _, _ = _problem(datasets, hyper__dev_bn="train")
  ev, tr = p_eval.losses_at(stats, STEP, True), p_train.losses_at(stats, STEP, True)
  assert ev.dev_stats is None
  new = tr.dev_stats(params)
  mu, var = _first_bn_batch_stats(params, _dev_images(c, keys, datasets["maoal"], STEP,
                                                      False)[0])
  r = stats["block1"]["bn"]
  np.testing.assert_allclose(new["block1"]["bn"]["mean"], M * r["mean"] + (1 - M) * mu,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["block1"]["bn"]["var"], M * r["var"] + (1 - M) * var,
                             rtol=1e-5, atol=1e-6)
  # Batch statistics, not the running ones: another running state, the same dev loss.
  other = jax.tree.map(lambda a: a * 3.0, stats)
  assert np.isclose(tr.dev(params), p_train.losses_at(other, STEP, True).dev(params))
  assert not np.isclose(ev.dev(params), p_eval.losses_at(other, STEP, True).dev(params))
  assert abs(float(tr.dev(params)) - float(ev.dev(params))) > 1e-4
  # Nothing else: the training losses, and the lower step's dev loss (read by SLGrad).
  assert _close(ev.per_sample(params), tr.per_sample(params))
  lo_ev, lo_tr = p_eval.losses_at(stats, STEP), p_train.losses_at(stats, STEP)
  assert lo_tr.dev_stats is None and np.isclose(lo_ev.dev(params), lo_tr.dev(params))


@pytest.mark.parametrize("case", ["maoal", "taskgen"])
def test_train_term_fresh_is_a_function_of_the_step_and_changes_only_the_batch(
    datasets, case):
  c, keys, p_lower, params, stats = _problem(datasets, case, data__augment=False)
  _, _, p_fresh, _, _ = _problem(datasets, case, data__augment=False,
                                 hyper__train_term="fresh")
  data = datasets[case]
  lower = p_lower.losses_at(stats, STEP, True)
  fresh = p_fresh.losses_at(stats, STEP, True)
  k_fresh = problems.upper_keys(keys.step, STEP)[0]
  b = c.data.batch_size
  if case == "maoal":  # per task: the first batch of an order drawn from the step
    idx = sampler.task_batch_indices(k_fresh, 0, data.train_counts, b,
                                     data.train_images.shape[1])
    want = data.preprocess(jnp.asarray(data.train_images)[np.arange(len(idx))[:, None],
                                                           np.asarray(idx)])
    lower_idx = sampler.task_batch_indices(keys.data, STEP, data.train_counts, b,
                                           data.train_images.shape[1])
    assert not np.array_equal(idx, lower_idx)
  else:
    idx = sampler.pool_batch_indices(k_fresh, 0, len(data.train_inputs), b)
    want = data.preprocess(jnp.asarray(data.train_inputs)[np.asarray(idx)])
    assert not np.array_equal(idx, sampler.pool_batch_indices(
        keys.data, STEP, len(data.train_inputs), b))
  np.testing.assert_array_equal(fresh.inputs, want)
  np.testing.assert_array_equal(lower.inputs, p_lower.losses_at(stats, STEP).inputs)
  np.testing.assert_array_equal(fresh.inputs, p_fresh.losses_at(stats, STEP, True).inputs)
  assert not np.array_equal(fresh.inputs, p_fresh.losses_at(stats, STEP + 1, True).inputs)
  # Nothing else: the dev loss and the lower step's batch.
  assert np.isclose(lower.dev(params), fresh.dev(params))
  np.testing.assert_array_equal(p_fresh.losses_at(stats, STEP).inputs, lower.inputs)


def test_augment_dev_changes_the_upper_dev_batch_only(datasets):
  c, keys, p_off, params, stats = _problem(datasets)
  _, _, p_on, _, _ = _problem(datasets, data__augment_dev=True)
  on, off = p_on.losses_at(stats, STEP, True), p_off.losses_at(stats, STEP, True)
  images, labels = _dev_images(c, keys, datasets["maoal"], STEP, augmented=True)
  clean, _ = _dev_images(c, keys, datasets["maoal"], STEP, augmented=False)
  assert not np.array_equal(images, clean)
  backbone = get_backbone(c.model.name, **dict(c.model.kwargs))
  feats = backbone.apply({"params": params["backbone"], "batch_stats": stats}, images,
                         train=False)
  logits = np.asarray(feats, np.float64) @ np.asarray(params["heads"]["kernel"][0]) \
      + np.asarray(params["heads"]["bias"][0])
  logits = logits[:, :datasets["maoal"].num_classes[0]]
  logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                                                            keepdims=True)) \
      - logits.max(1, keepdims=True)
  want = -np.mean(logp[np.arange(len(labels)), labels])
  np.testing.assert_allclose(float(on.dev(params)), want, rtol=1e-5)
  assert abs(float(on.dev(params)) - float(off.dev(params))) > 1e-5
  # The training batch and the lower step's dev loss are unchanged.
  np.testing.assert_array_equal(on.inputs, off.inputs)
  assert np.isclose(p_on.losses_at(stats, STEP).dev(params),
                    p_off.losses_at(stats, STEP).dev(params))


def test_aux_heads_shifted_trains_aux_task_k_through_head_k_minus_1(datasets):
  c, _, p_own, params, stats = _problem(datasets)
  _, _, p_shift, _, _ = _problem(datasets, model__aux_heads="shifted")
  t = p_own.num_tasks
  head_of = np.array([0] + list(range(t - 1)))
  permuted = {**params, "heads": jax.tree.map(lambda h: h[head_of], params["heads"])}
  own, shift = p_own.losses_at(stats, STEP), p_shift.losses_at(stats, STEP)
  np.testing.assert_allclose(shift.per_sample(params)[0], own.per_sample(permuted)[0],
                             rtol=1e-6)
  ref = jax.jit(lambda p: base.per_task_grads_reference(shift, p)[0])(params)
  for mode in ("vmap", "map"):  # the fast paths (per_task, one_task) index heads too
    got = jax.jit(lambda p: base.per_task_grads(shift, p, mode)[0])(params)
    assert _close(got, ref), mode
  heads = ref["heads"]["kernel"]  # [T, T, F, C]: task, head
  assert np.abs(heads[:, t - 1]).max() == 0  # the last head is never used
  assert np.abs(heads[1, 0]).max() > 0 and np.abs(heads[1, 1]).max() == 0
  assert np.isclose(own.dev(params), shift.dev(params))  # evaluation: head 0
  with pytest.raises(ValueError, match="aux_heads"):
    _problem(datasets, "taskgen", model__aux_heads="shifted")


def test_tasks_the_data_declares_sharing_the_main_head_train_through_it(datasets):
  # Digits: aux_digit and aux_random are more labels of the main task (head 0).
  _, _, p_own, params, stats = _problem(datasets)
  _, _, p_data, _, _ = _problem(datasets, data="shared")
  head_of = np.array(datasets["shared"].heads)
  assert head_of.tolist() == [0, 0, 2, 3, 0] and p_data.spec.heads == tuple(head_of)
  assert p_own.spec.heads == tuple(range(p_own.num_tasks))
  shared = {**params, "heads": jax.tree.map(lambda h: h[head_of], params["heads"])}
  own, dat = p_own.losses_at(stats, STEP), p_data.losses_at(stats, STEP)
  np.testing.assert_allclose(dat.per_sample(params)[0], own.per_sample(shared)[0],
                             rtol=1e-6)
  # "shifted" overrides the data's heads, and methods then see task-specific heads.
  _, _, p_shift, _, _ = _problem(datasets, data="shared", model__aux_heads="shifted")
  assert p_shift.spec.heads is None


def test_torch_default_matches_pytorchs_kaiming_uniform_statement():
  backbone = get_backbone("resnet18_cifar", width=16)
  params = jax.jit(lambda k: backbone.init(k, jnp.zeros((1, 8, 8, 3)), train=False))(
      jax.random.key(0))["params"]
  heads = {"kernel": jnp.zeros((3, 512 // 4, 7)), "bias": jnp.ones((3, 7)),
           "conv_kernel": jnp.zeros((3, 3, 3, 8, 8)), "conv_bias": jnp.zeros((3, 8))}
  new = model_init.torch_default(jax.random.key(1), params)
  new_heads = model_init.torch_default(jax.random.key(2), heads, lead=1)
  gain = math.sqrt(2.0 / (1.0 + 5.0))  # kaiming_uniform_(a=√5), leaky_relu gain

  def check(w, fan_in):
    w = np.asarray(w, np.float64).ravel()
    bound = gain * math.sqrt(3.0 / fan_in)
    assert np.isclose(bound, 1.0 / math.sqrt(fan_in))
    assert np.abs(w).max() <= bound
    assert w.size < 200 or np.abs(w).max() > 0.98 * bound  # P(miss) ≤ 0.98^200 ≈ 2 %
    var, n = bound**2 / 3.0, w.size  # U(−b, b); sd of the sample variance:
    assert abs(w.var() - var) < 5 * bound**2 * math.sqrt(4.0 / 45.0 / n)
    assert abs(w.mean()) < 5 * math.sqrt(var / n)

  k = new["stage2"]["block0"]["conv2"]["conv"]["kernel"]  # 3×3, 32 → 32
  check(k, 9 * 32)
  he = np.asarray(params["stage2"]["block0"]["conv2"]["conv"]["kernel"]).var()
  assert 4.5 < he / np.asarray(k).var() < 7.5  # He (fan-out) 2/(9·32) vs 1/(3·9·32)
  check(new["stage2"]["block0"]["shortcut"]["conv"]["kernel"], 16)  # 1×1, 16 → 32
  for t in range(3):
    check(new_heads["kernel"][t], 128)
    check(new_heads["bias"][t], 128)
    check(new_heads["conv_kernel"][t], 9 * 8)
    check(new_heads["conv_bias"][t], 9 * 8)
  assert not np.array_equal(new_heads["kernel"][0], new_heads["kernel"][1])
  bn = new["stage2"]["block0"]["conv2"]["bn"]  # BatchNorm: weight 1, bias 0
  np.testing.assert_array_equal(bn["scale"], 1.0)
  np.testing.assert_array_equal(bn["bias"], 0.0)
  assert model_init.initialize("flax", jax.random.key(1), params) is params
  with pytest.raises(ValueError, match="init"):
    model_init.initialize("he", jax.random.key(1), params)


def test_upper_step_statistics_and_resume(datasets):
  """The originals' upper step (tiny_configs: train-mode dev on an augmented batch, G
  on a fresh batch, PyTorch's init): the running statistics fold the dev batch, then
  the fresh main-task batch (bn_stats "main"); the step is a function of the state
  (resuming from a checkpoint repeats it). With dev_bn="eval" they are untouched."""
  c = tiny_configs.get_config("maoal")
  c.hyper.on_diverged = "apply"
  exp = build_experiment(c, datasets["maoal"])
  state = exp.init()
  w = state.params["backbone"]["block1"]["conv"]["kernel"]
  assert np.abs(w).max() <= 1 / math.sqrt(9 * w.shape[2])  # torch_default init
  state, _ = exp.lower_step(state)
  new, up = exp.upper_step(state)
  again, _ = exp.upper_step(state)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, new, again)))
  keys = problems.Keys(*jax.random.split(jax.random.key(c.seed), 4))
  dev, _ = _dev_images(c, keys, exp.data, 0, augmented=True)
  fresh = exp.losses_at(state, 0, upper=True).inputs[0]
  mu_d, var_d = _first_bn_batch_stats(state.params, dev)
  mu_f, var_f = _first_bn_batch_stats(state.params, fresh)
  r = state.batch_stats["block1"]["bn"]
  for name, a, b in (("mean", mu_d, mu_f), ("var", var_d, var_f)):
    want = M * (M * np.asarray(r[name]) + (1 - M) * a) + (1 - M) * b
    np.testing.assert_allclose(new.batch_stats["block1"]["bn"][name], want, rtol=1e-5,
                               atol=1e-6)

  c.hyper.dev_bn = "eval"
  exp_eval = build_experiment(c, datasets["maoal"])
  new_eval, up_eval = exp_eval.upper_step(state)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, new_eval.batch_stats,
                                          state.batch_stats)))
  # The dev loss and so the hypergradient change with the BatchNorm mode.
  assert abs(float(up["dev_loss"]) - float(up_eval["dev_loss"])) > 1e-5
  assert abs(float(up["hypergrad_norm"]) - float(up_eval["hypergrad_norm"])) > 1e-6
