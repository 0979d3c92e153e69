"""ResNet dropout (ATTITTUD's CheXpert body): on only in training with a dropout PRNG;
ATTITTUD's basis is built without it."""

import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.data.multitask import MultiTaskData, encode_multilabel
from aux_jax.methods import get_method
from aux_jax.methods.base import per_task_grads, per_task_grads_reference
from aux_jax.models.resnet import ResNet18
from aux_jax.train.experiment import build_experiment
from configs import common


def test_resnet_dropout_only_in_training_with_a_key():
  x = jax.random.normal(jax.random.key(0), (3, 32, 32, 3))
  plain = ResNet18(width=2, stage_sizes=(1, 1, 1, 1))
  drop = ResNet18(width=2, stage_sizes=(1, 1, 1, 1), dropout=0.5)
  v = plain.init(jax.random.key(1), x, train=False)
  key = {"dropout": jax.random.key(2)}
  train = lambda m, **kw: m.apply(v, x, train=True, mutable=["batch_stats"], **kw)[0]
  np.testing.assert_array_equal(drop.apply(v, x, train=False), plain.apply(v, x, train=False))
  np.testing.assert_array_equal(train(drop), train(plain))          # no key: no dropout
  np.testing.assert_array_equal(train(plain, rngs=key), train(plain))  # p = 0: no effect
  assert not np.allclose(train(drop, rngs=key), train(plain))
  # p = 1 on the output: everything dropped.
  full = ResNet18(width=2, stage_sizes=(1, 1, 1, 1), dropout=1.0)
  assert not np.any(np.asarray(train(full, rngs=key)))


def _experiment():
  rng = np.random.default_rng(0)
  img = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  data = MultiTaskData(
      train_images=np.stack([img(16), img(16)]),
      train_labels=np.stack([encode_multilabel(rng.integers(0, 2, (16, 3))),
                             rng.integers(0, 4, 16).astype(np.int32)]),
      train_counts=np.array([16, 16], np.int32), num_classes=np.array([3, 4], np.int32),
      dev_images=img(4), dev_labels=encode_multilabel(rng.integers(0, 2, (4, 3))),
      test_images=img(4), test_labels=encode_multilabel(rng.integers(0, 2, (4, 3))),
      task_names=("main", "aux"), mean=np.full(3, 128.0, np.float32),
      std=np.full(3, 64.0, np.float32), task_kinds=("multilabel", "classification"))
  c = common.base()
  c.data = common.data("unused", batch_size=8, dev_batch_size=4)
  c.model = common.model("resnet18", width=2, stage_sizes=(1, 1, 1, 1), dropout=0.5)
  c.method = common.method("equal")
  c.optim = common.optim("adam", lr=1e-3, num_steps=10)
  c.hyper = common.hyper()
  c.train = common.train(log_every=5, eval_every=5, checkpoint_every=10)
  return build_experiment(c, data)


def test_trainer_losses_use_dropout_and_attittud_basis_does_not():
  exp = _experiment()
  state = exp.init()
  method = get_method("attittud", 2, exp.partition, num_basis=2, nsamples=4)
  mstate = method.init(jax.random.key(0))

  def run(state):
    losses = exp.losses_at(state, 1)
    with_drop = losses.per_sample(state.params)[0]
    without = losses.per_sample_no_dropout(state.params)[0]
    basis = lambda fns: method.direction(state.params, (), mstate.state, fns,
                                         jax.random.key(3))[1].basis
    # The basis of the trainer's losses is that of dropout-free losses, not that of
    # losses whose basis would see dropout.
    return (with_drop, without, basis(losses),
            basis(losses._replace(per_sample=losses.per_sample_no_dropout,
                                  per_sample_no_dropout=None)),
            basis(losses._replace(per_sample_no_dropout=None)))

  with_drop, without, got, clean, dropped = jax.jit(run)(state)
  assert not np.allclose(with_drop, without)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(clean)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  assert any(not np.allclose(x, y, atol=1e-4) for x, y in zip(jax.tree.leaves(got),
                                                               jax.tree.leaves(dropped)))
  # The fast per-task gradients see the same dropout masks as the reference.
  fast, ref = jax.jit(lambda s: (per_task_grads(exp.losses_at(s, 1), s.params)[0],
                                 per_task_grads_reference(exp.losses_at(s, 1), s.params)[0]))(
      state)
  for x, y in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
