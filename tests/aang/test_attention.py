"""R-axis masks and denoise targets on short sequences, against hand-computed values."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.aang import attention as A
from aux_jax.aang import objectives as O
from aux_jax.aang.space import TRANSFORMS
from aux_jax.aang.tokenizer import CLS_ID, FIRST_BYTE_ID, MASK_ID, PAD_ID, SEP_ID, VOCAB_SIZE
from aux_jax.aang.transformer import AangModel, EncoderConfig

KEY = jax.random.PRNGKey(0)
# [CLS a b c SEP PAD PAD]: 5 real tokens, 2 pads.
SEQ = np.array([CLS_ID, 10, 11, 12, SEP_ID, PAD_ID, PAD_ID], np.int32)
VALID = SEQ != PAD_ID
SPEC = O.TokenSpec(PAD_ID, MASK_ID, FIRST_BYTE_ID, VOCAB_SIZE)


@jax.jit
def objective_batch(key, tokens, transform, representation):
  return O.make_objective_batch(key, tokens, transform, representation, SPEC)


def test_fixed_orders_hand_computed():
  n, L = 5, 7
  keys_ok = np.zeros((L, L), bool)
  keys_ok[:, :n] = True
  tril = np.tril(np.ones((L, L), bool))
  expected = {
      A.BIDIRECTIONAL: keys_ok,
      A.LEFT_TO_RIGHT: tril & keys_ok,
      A.RIGHT_TO_LEFT: tril.T & keys_ok,
  }
  for rep, want in expected.items():
    mask, nxt, has = A.representation_mask(KEY, jnp.asarray(VALID), rep)
    np.testing.assert_array_equal(np.asarray(mask)[:n], want[:n])  # real queries
  _, nxt, has = A.representation_mask(KEY, jnp.asarray(VALID), A.LEFT_TO_RIGHT)
  np.testing.assert_array_equal(np.asarray(nxt)[:4], [1, 2, 3, 4])
  _, nxt, has = A.representation_mask(KEY, jnp.asarray(VALID), A.RIGHT_TO_LEFT)
  np.testing.assert_array_equal(np.asarray(nxt)[1:5], [0, 1, 2, 3])
  rank = np.asarray(A.factorization_rank(KEY, jnp.asarray(VALID), A.RIGHT_TO_LEFT))
  np.testing.assert_array_equal(rank, [4, 3, 2, 1, 0, 5, 6])  # pads after real tokens


def test_random_factorized_is_a_permuted_causal_mask():
  L, n = 7, 5
  seen = set()
  for s in range(300):
    k = jax.random.PRNGKey(s)
    rank = np.asarray(A.factorization_rank(k, jnp.asarray(VALID), A.RANDOM_FACTORIZED))
    mask, nxt, has = (np.asarray(x) for x in
                      A.representation_mask(k, jnp.asarray(VALID), A.RANDOM_FACTORIZED))
    assert sorted(rank[:n]) == list(range(n)) and sorted(rank[n:]) == [5, 6]
    for i, j in itertools.product(range(n), range(L)):
      assert mask[i, j] == (j < n and rank[j] <= rank[i])   # never the future
    for i in range(L):
      if has[i]:
        assert rank[nxt[i]] == rank[i] + 1
    seen.add(tuple(np.argsort(rank[:3])))  # relative order of the first 3 positions
  assert len(seen) == 6  # all 3! relative orders occur


def test_l2r_and_r2l_next_token_targets():
  tokens = jnp.asarray(SEQ[None])
  for rep, want_t, want_w in [
      # L2R: position i predicts token i+1; CLS->a, a->b, b->c; c->SEP is special.
      (A.LEFT_TO_RIGHT, [10, 11, 12], [1, 1, 1, 0, 0, 0, 0]),
      # R2L: position i predicts token i-1; b->a, c->b, SEP->c; a->CLS is special.
      (A.RIGHT_TO_LEFT, None, [0, 0, 1, 1, 1, 0, 0]),
  ]:
    ob = objective_batch(KEY, tokens, TRANSFORMS.index("none"), rep)
    w = np.asarray(ob.weights[0])
    np.testing.assert_array_equal(w, want_w)
    t, q = np.asarray(ob.targets[0]), np.asarray(ob.query_pos[0])
    shift = 1 if rep == A.LEFT_TO_RIGHT else -1
    for i in np.flatnonzero(w):
      assert q[i] == i + shift and t[i] == SEQ[i + shift]
    if want_t is not None:
      np.testing.assert_array_equal(t[:3], want_t)
    # The copy fix: the target position is never visible from its query.
    mask = np.asarray(ob.mask[0])
    assert not any(mask[i, q[i]] for i in np.flatnonzero(w))


def test_bidirectional_targets_are_selected_originals():
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(FIRST_BYTE_ID, VOCAB_SIZE, (64, 12)), jnp.int32)
  ob = objective_batch(KEY, tokens, TRANSFORMS.index("mask"), A.BIDIRECTIONAL)
  w = np.asarray(ob.weights) > 0
  np.testing.assert_array_equal(np.asarray(ob.targets), np.asarray(tokens))
  np.testing.assert_array_equal(np.asarray(ob.query_pos)[0], np.arange(12))
  # Every target position is masked in the input; nothing else is.
  np.testing.assert_array_equal(np.asarray(ob.tokens) == MASK_ID, w)
  assert 0.1 < w.mean() < 0.2


@pytest.mark.parametrize("rep", [A.LEFT_TO_RIGHT, A.RIGHT_TO_LEFT, A.RANDOM_FACTORIZED])
def test_denoise_logits_do_not_see_their_target(rep):
  """Changing the token a position must predict leaves that position's LM logits as is."""
  cfg = EncoderConfig(vocab_size=VOCAB_SIZE, max_len=8, width=16, depth=2, num_heads=2,
                      mlp_dim=16, dropout=0.0)
  model = AangModel(cfg, num_classes=3)
  params = model.init(jax.random.PRNGKey(1))
  seq = jnp.asarray([[CLS_ID, 10, 11, 12, 13, 14, SEP_ID, PAD_ID]])
  ob = objective_batch(KEY, seq, 0, rep)
  logits = jax.jit(lambda toks: model.lm_logits(
      params, model.encode(params, toks, ob.mask), ob.query_pos))
  base = np.asarray(logits(seq))
  q, w = np.asarray(ob.query_pos[0]), np.asarray(ob.weights[0])
  checked = 0
  for i in np.flatnonzero(w):
    changed = np.asarray(logits(seq.at[0, q[i]].set(99)))
    np.testing.assert_allclose(changed[0, i], base[0, i], atol=1e-5)
    # Control: a position that does see q[i] changes.
    sees = [j for j in np.flatnonzero(np.asarray(ob.mask[0])[:, q[i]]) if j != q[i]]
    if sees:
      assert np.abs(changed[0, sees[0]] - base[0, sees[0]]).max() > 1e-4
      checked += 1
  assert checked >= 3
