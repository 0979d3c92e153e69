"""Tests for aux_jax.models.labeler: masked softmax, soft cross-entropy, labeler gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax import losses
from aux_jax.models import labeler

C, K, B = 4, 3, 6


def test_masked_softmax_support_and_values():
  logits = jax.random.normal(jax.random.key(0), (B, C * K)) * 3
  labels = jnp.array([0, 3, 1, 2, 3, 0])
  q = np.asarray(labeler.masked_softmax(logits, labels, K))
  assert q.shape == (B, C * K)
  np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
  z = np.asarray(logits, np.float64)
  for b, y in enumerate(np.asarray(labels)):
    outside = np.ones(C * K, bool)
    outside[y * K:(y + 1) * K] = False
    assert (q[b, outside] == 0.0).all()  # exactly zero, not just small
    e = np.exp(z[b, y * K:(y + 1) * K] - z[b, y * K:(y + 1) * K].max())
    np.testing.assert_allclose(q[b, y * K:(y + 1) * K], e / e.sum(), rtol=1e-5)


def test_masked_softmax_with_one_subclass_is_one_hot():
  logits = jax.random.normal(jax.random.key(0), (B, C))
  labels = jnp.arange(B) % C
  np.testing.assert_array_equal(
      labeler.masked_softmax(logits, labels, 1), np.eye(C)[np.asarray(labels)])


def test_masked_softmax_bad_shapes():
  with pytest.raises(ValueError, match="C\\*k"):
    labeler.masked_softmax(jnp.zeros((B, 10)), jnp.zeros((B,), jnp.int32), 3)
  with pytest.raises(ValueError, match="main_labels"):
    labeler.masked_softmax(jnp.zeros((B, 12)), jnp.zeros((B + 1,), jnp.int32), 3)


def _soft_ce(a, q):  # the generated task's loss (kind "soft_classification")
  return losses.per_sample_loss("soft_classification", a, q, a.shape[-1])


def test_generated_label_loss_matches_numpy():
  a = jax.random.normal(jax.random.key(1), (B, C * K))
  q = labeler.masked_softmax(
      jax.random.normal(jax.random.key(2), (B, C * K)), jnp.arange(B) % C, K)
  an, qn = np.asarray(a, np.float64), np.asarray(q, np.float64)
  logp = an - an.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  loss = _soft_ce(a, q)
  assert loss.shape == (B,)
  np.testing.assert_allclose(loss, -(qn * logp).sum(1), rtol=1e-5)


@pytest.mark.parametrize("shape", [(B, 8, 8, 3), (B, 5)])
def test_labeler_outputs_and_gradient_flow(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  labels = jnp.array([0, 1, 2, 3, 1, 0])
  aux_logits = jax.random.normal(jax.random.key(1), (B, C * K))
  net = labeler.Labeler(C, K, features=(4, 6))
  params = jax.jit(net.init)(jax.random.key(2), x, labels)["params"]
  q = np.asarray(jax.jit(net.apply)({"params": params}, x, labels))
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-6)
  mask = np.zeros((B, C * K), bool)
  for b, y in enumerate(np.asarray(labels)):
    mask[b, y * K:(y + 1) * K] = True
  assert (q[~mask] == 0).all() and (q[mask] > 0).all()

  def grad_fn(k_net):
    def loss(p, a):
      soft = k_net.apply({"params": p}, x, labels)
      return jnp.mean(_soft_ce(a, soft))
    return jax.jit(jax.grad(loss))

  grads = grad_fn(net)(params, aux_logits)
  for g in jax.tree.leaves(grads):  # backbone and head both receive gradient
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
  # With one sub-class the labels are one-hot whatever φ is: zero gradient.
  net1 = labeler.Labeler(C, 1, features=(4, 6))
  params1 = jax.jit(net1.init)(jax.random.key(2), x, labels)["params"]
  grads1 = grad_fn(net1)(params1, aux_logits[:, :C])
  for g in jax.tree.leaves(grads1):
    np.testing.assert_array_equal(g, 0.0)
