"""SLGrad's behaviour on its toy problem: corrupted main-task samples get less weight.

The toy regression (`aux_jax.data.toy_regression`) with 30 % of the main task's
training targets replaced by the constant −0.5 (clean targets are |tanh(·)| ≈ 1,
so a corrupted sample's gradient pulls the main head the other way from the dev
gradient). We train SLGrad through `build_experiment` (the launcher's path) for a
while, then over further steps collect its per-sample main-task weights W[0, i]
(the ``main_sample_weights`` metric) with each batch's example indices.

SLGrad (Grégoire et al., 2023) weights (t, i) by max(⟨∇ℓ_t(x_i), g_val⟩, 0): a
corrupted sample disagrees with the clean dev gradient, so its mean weight must be
well below a clean sample's (observed ratio of mean weights noisy/clean ≈ 0.29 at
seed 0 with the original's 1/B update scale and whole 200-example dev set; ≈ 0.1–0.26
over seeds 0–2 with the earlier B-times-larger steps; asserted < 0.5). The same
assertion fails for weights that do not look at the dev set: uniform weighting ("unif": every sample 1/(T·B), ratio exactly 1) and
the control computed here, the same rule with g_val replaced by a random direction
(ratio ≈ 6–10: the corrupted samples' larger gradients get larger |a|).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aux_jax.data import get_dataset, sampler
from aux_jax.rules.slgrad import sample_alignments, slgrad_weights
from aux_jax.train import problems
from aux_jax.train.experiment import build_experiment
from configs import slgrad_toy

WARMUP, COLLECT = 100, 30


def _weights(losses, params, direction_key):
  """W[0] from the dev gradient (as SLGrad) and from a random direction (control)."""
  heads, backbone = params["heads"], params["backbone"]
  merge = lambda bb: {"backbone": bb, "heads": heads}
  task_losses = lambda bb: losses.per_sample(merge(bb))[0]          # [T, B]
  g_val = jax.grad(lambda bb: losses.dev(merge(bb)))(backbone)
  leaves, treedef = jax.tree.flatten(backbone)
  keys = jax.random.split(direction_key, len(leaves))
  g_rand = treedef.unflatten([jax.random.normal(k, x.shape, x.dtype)
                              for k, x in zip(keys, leaves)])
  w_dev = slgrad_weights(sample_alignments(task_losses, backbone, g_val))[0]
  w_rand = slgrad_weights(sample_alignments(task_losses, backbone, g_rand))[0]
  return w_dev, w_rand


def test_slgrad_down_weights_corrupted_main_task_samples():
  c = slgrad_toy.get_config("slgrad")
  c.data.kwargs.noise = 0.3
  c.data.kwargs.noise_kind = "constant"
  c.data.kwargs.noise_tasks = "main"   # the behaviour under test: noisy main rows
  # One device: the behaviour, not data parallelism, is under test (and 8 fake CPU
  # devices on a loaded 2-core machine are slow).
  c.mesh = ml_collections.ConfigDict({"num_devices": 1})
  data = get_dataset(c.data.name, **dict(c.data.kwargs))
  noisy = data.train_info["noisy"]
  n_train, batch = len(noisy), c.data.batch_size
  assert noisy.sum() == round(0.3 * n_train)
  exp = build_experiment(c, data)
  # The batch of step s, exactly as build_experiment / problems.shared_input draw it.
  keys = problems.Keys(*jax.random.split(jax.random.key(c.seed), 4))
  batch_indices = jax.jit(lambda s: sampler.pool_batch_indices(keys.data, s, n_train, batch))
  y_main = data.train_targets[0][:, 0]
  y_dev = np.asarray(data.dev_targets[0]).reshape(-1)
  assert len(y_dev) == 200 and c.data.dev_batch_size == 0  # 0: the whole dev split

  @jax.jit
  def inspect(state, key):
    losses = exp.losses_at(state, state.step)
    # With zero heads every prediction is 0, so the main per-sample loss is y_i²:
    # identifies the rows the step really used.
    zero = {**state.params, "heads": jax.tree.map(jnp.zeros_like, state.params["heads"])}
    return (losses.per_sample(zero)[0][0], losses.dev(zero),
            _weights(losses, state.params, key))

  state = exp.init()
  for _ in range(WARMUP):
    state, _ = exp.lower_step(state)
  w_slgrad, w_dev, w_rand, is_noisy = [], [], [], []
  for s in range(WARMUP, WARMUP + COLLECT):
    idx = np.asarray(batch_indices(s))
    y_sq, dev_sq, (wd, wr) = inspect(state, jax.random.key(s))
    np.testing.assert_allclose(np.asarray(y_sq), y_main[idx] ** 2, rtol=1e-6)
    # g_val's loss is over the whole 200-example dev split every step, as the original.
    np.testing.assert_allclose(float(dev_sq), np.mean(y_dev ** 2), rtol=1e-5)
    state, metrics = exp.lower_step(state)
    w_slgrad.append(np.asarray(metrics["main_sample_weights"]))
    w_dev.append(np.asarray(wd))
    w_rand.append(np.asarray(wr))
    is_noisy.append(noisy[idx])
  w_slgrad, w_dev, w_rand, is_noisy = map(np.concatenate, (w_slgrad, w_dev, w_rand, is_noisy))
  assert 0.1 < is_noisy.mean() < 0.5  # both kinds of sample were seen, many times
  # The metric is the rule's W[0, :] on the step's batch (recomputed independently).
  np.testing.assert_allclose(w_slgrad, w_dev, rtol=1e-4, atol=1e-7)

  def ratio(w):
    return w[is_noisy].mean() / w[~is_noisy].mean()

  assert ratio(w_slgrad) < 0.5, ratio(w_slgrad)
  # Control: alignment with a direction unrelated to the dev set does not down-weight them.
  assert ratio(w_rand) > 0.5, ratio(w_rand)


def test_look_ahead_option_is_the_originals_two_updates_per_batch():
  """method.kwargs.look_ahead: per batch, an update with the previous batch's W
  (1/(T·B) at first), then W at the updated parameters and a second update
  (Dynamic_weighting.py:421-500); look_ahead=False is that second kind of update
  alone, one per batch. Re-derived here with the optimizer and the rule's functions."""
  import optax
  from aux_jax.train import optimizers

  def config(look_ahead):
    c = slgrad_toy.get_config("slgrad")
    c.data.kwargs.update(num_samples=60, input_dim=6)
    c.data.batch_size = 4
    c.model.kwargs = {"hidden": (5,)}
    c.method.kwargs.look_ahead = look_ahead
    c.mesh = ml_collections.ConfigDict({"num_devices": 1})
    return c

  c = config(True)
  data = get_dataset(c.data.name, **dict(c.data.kwargs))
  exp, plain = build_experiment(c, data), build_experiment(config(False), data)
  assert exp.method.updates_per_batch == 2 and plain.method.updates_per_batch == 1
  tx = optimizers.lower_optimizer(c.optim)
  state = exp.init()
  t, b = 2, 4

  def update(params, opt, losses, w):
    g = jax.grad(lambda p: jnp.sum(w / b * losses.per_sample(p)[0]))(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt

  def fresh_w(params, losses):
    merge = lambda bb: {"backbone": bb, "heads": params["heads"]}
    g_val = jax.grad(lambda bb: losses.dev(merge(bb)))(params["backbone"])
    return slgrad_weights(sample_alignments(lambda bb: losses.per_sample(merge(bb))[0],
                                            params["backbone"], g_val))

  params, opt = state.params, state.opt_state
  w = jnp.full((t, b), 1.0 / (t * b))
  s = state
  for step in range(3):
    losses = exp.losses_at(s, step)
    params, opt = update(params, opt, losses, w)           # the look-ahead update
    w = fresh_w(params, losses)
    params, opt = update(params, opt, losses, w)           # the final update
    s, metrics = exp.lower_step(s)
    for x, y in zip(jax.tree.leaves(s.params), jax.tree.leaves(params)):
      np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["main_sample_weights"], w[0], rtol=1e-5, atol=1e-7)
  # The default: one update per batch with the fresh W (same data, same init).
  p0 = plain.init()
  losses = plain.losses_at(p0, 0)
  want, _ = update(p0.params, p0.opt_state, losses, fresh_w(p0.params, losses))
  got, _ = plain.lower_step(p0)
  for x, y in zip(jax.tree.leaves(got.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
