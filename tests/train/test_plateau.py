"""The learning rate lowered on a plateau (ATTITTUD's ReduceLROnPlateau): the rule
against a NumPy re-statement of PyTorch's, its effect on a training step, and the
loop calling it after every evaluation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aux_jax.data import get_dataset
from aux_jax.train import loop, optimizers
from aux_jax.train.experiment import build_experiment
from aux_jax.train.plateau import plateau_scale, scale_by_plateau, step_plateau
from configs import slgrad_toy


def _torch_rule(values, lr, factor, patience, min_lr, rtol):
  """PyTorch ReduceLROnPlateau(mode="min", threshold_mode="rel", cooldown=0)."""
  best, bad, out = np.inf, 0, []
  for v in values:
    if v < best * (1 - rtol):
      best, bad = v, 0
    else:
      bad += 1
    if bad > patience:
      lr, bad = max(lr * factor, min_lr), 0
    out.append(lr)
  return out


def test_rule_matches_pytorch_semantics():
  rng = np.random.default_rng(0)
  # Improvements, plateaus, an improvement below the relative threshold (1 → 0.99995)
  # and a long plateau that hits the floor.
  values = ([1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.79995, 0.81, 0.82, 0.83, 0.84]
            + [0.85] * 20 + list(0.5 + 0.1 * rng.random(30)))
  lr, min_lr = 1e-4, 1e-5
  want = _torch_rule(values, lr, 0.5, 4, min_lr, 1e-4)
  tx = optax.chain(optax.adam(lr), scale_by_plateau())
  state = tx.init({"w": jnp.zeros(2)})
  got = []
  for v in values:
    state = step_plateau(state, v, factor=0.5, patience=4, rtol=1e-4, min_scale=min_lr / lr)
    got.append(lr * plateau_scale(state))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert want[6] == lr / 2 and want[5] == lr  # the 5th non-improving evaluation
  assert min(want) == min_lr


def test_scale_reaches_the_update_and_the_loop_steps_it(tmp_path):
  c = slgrad_toy.get_config("stl")
  c.data.kwargs.update(num_samples=100, input_dim=8)
  c.data.update(batch_size=8, dev_batch_size=8, eval_batch_size=20)
  c.model.kwargs = {"hidden": (4,)}
  c.mesh = ml_collections.ConfigDict({"num_devices": 1})
  c.optim.update(name="adam", lr=1e-2, schedule="plateau", num_steps=6)
  c.optim.plateau = {"metric": "loss", "patience": 0, "min_lr": 1e-4}
  c.train.update(log_every=1, eval_every=1, checkpoint_every=6)
  assert optimizers.plateau_options(c.optim)["kwargs"]["min_scale"] == 1e-2
  exp = build_experiment(c, get_dataset(c.data.name, **dict(c.data.kwargs)))
  state = exp.init()
  lowered = exp.on_evaluate(exp.on_evaluate(state, {"dev_loss": 1.0}), {"dev_loss": 2.0})
  assert plateau_scale(lowered.opt_state) == 0.5  # patience 0: halved on the 1st miss
  step = lambda s: jax.tree.leaves(jax.tree.map(
      lambda a, b: a - b, exp.lower_step(s)[0].params, s.params))
  for full, half in zip(step(state), step(lowered)):
    np.testing.assert_allclose(np.asarray(half), 0.5 * np.asarray(full), rtol=1e-5, atol=1e-9)

  # The loop calls on_evaluate with every evaluation's dev metrics.
  seen = []

  def on_evaluate(s, dev):
    seen.append(dev["dev_loss"])
    return exp.on_evaluate(s, dev)

  summary = loop.train_and_evaluate(c, str(tmp_path), experiment=exp._replace(
      on_evaluate=on_evaluate), progress=lambda _: None)
  assert len(seen) == 6 and summary["steps"] == 6
