"""R-axis masks and denoise targets, against hand-computed values (the original's rules)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.aang import attention as A
from aux_jax.aang import objectives as O
from aux_jax.aang.space import OUTPUTS, REPRESENTATIONS, TRANSFORMS
from aux_jax.models.hf_tokenizer import HFTokenizer, byte_level_tokenizer

TOK = HFTokenizer(byte_level_tokenizer())   # the from-scratch tokenizer
CLS_ID, MASK_ID, PAD_ID, SEP_ID = TOK.cls_id, TOK.mask_id, TOK.pad_id, TOK.sep_id
KEY = jax.random.key(0)
# [CLS a b c d e SEP PAD PAD]: 7 real tokens, 2 pads.
SEQ = np.array([CLS_ID, 10, 11, 12, 13, 14, SEP_ID, PAD_ID, PAD_ID], np.int32)
VALID = SEQ != PAD_ID
L = len(SEQ)
SPEC = O.token_spec(TOK)
DENOISE = OUTPUTS.index("denoise")


@jax.jit
def objective_batch(key, tokens, t, r, copy_fix=True):
  return O.make_objective_batch(key, tokens, t, r, SPEC, copy_fix=copy_fix)


def mask_of(rep, transform="bert", copy_fix=True, output="denoise", batch=1):
  valid = jnp.asarray(np.tile(VALID, (batch, 1)))
  return np.asarray(A.representation_mask(
      KEY, valid, REPRESENTATIONS.index(rep), TRANSFORMS.index(transform),
      copy_fix=copy_fix, denoise=output == "denoise"))


def test_fixed_masks_hand_computed():
  i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
  keys = VALID[None, :]
  want = {"bidirectional": np.ones((L, L), bool), "left_to_right": j <= i,
          "right_to_left": j >= i}
  for rep, m in want.items():
    np.testing.assert_array_equal(mask_of(rep)[0], m & keys)   # T = bert: no copy case


@pytest.mark.parametrize("rep", ["bidirectional", "left_to_right", "right_to_left"])
def test_copy_cases_hide_the_diagonal_only_for_none_denoise(rep):
  diag = np.eye(L, dtype=bool)
  fixed = mask_of(rep, "none")[0]
  original = mask_of(rep, "none", copy_fix=False)[0]
  assert not (fixed & diag).any()
  np.testing.assert_array_equal(fixed, original & ~diag)
  assert (original & diag)[:, VALID].any()   # the original: every real token sees itself
  for other in ("replace", "mask", "bert"):
    np.testing.assert_array_equal(mask_of(rep, other)[0], original)
  np.testing.assert_array_equal(mask_of(rep, "none", output="supervised")[0], original)


def test_random_factorized_is_one_bernoulli_matrix_without_diagonal():
  big = 64
  valid = jnp.ones((3, big), bool).at[:, -4:].set(False)
  m = np.asarray(A.representation_mask(KEY, valid, A.RANDOM_FACTORIZED, 0))
  assert (m[0] == m[1]).all() and (m[0] == m[2]).all()     # shared by the batch
  assert not np.diag(m[0]).any()
  assert not m[:, :, -4:].any()                            # padding keys hidden
  off = m[0][:60, :60][~np.eye(60, dtype=bool)]
  assert abs(off.mean() - 0.6) < 0.03                      # keep probability 0.6
  other = np.asarray(A.representation_mask(jax.random.key(1), valid, A.RANDOM_FACTORIZED, 0))
  assert (other != m).any()                                # a new matrix per key


@pytest.mark.parametrize("t,r", list(itertools.product(TRANSFORMS, REPRESENTATIONS)))
def test_denoise_targets_exist_only_at_transformed_positions(t, r):
  tokens = jnp.asarray(np.tile(SEQ, (256, 1)))
  ob = objective_batch(KEY, tokens, TRANSFORMS.index(t), REPRESENTATIONS.index(r))
  w, out = np.asarray(ob.weights) > 0, np.asarray(ob.tokens)
  clean = np.tile(SEQ, (256, 1))
  np.testing.assert_array_equal(np.asarray(ob.targets), clean)   # same-position originals
  regular = clean >= SPEC.random_low
  assert not w[~regular].any()                                     # never a special
  assert abs(w[regular].mean() - 0.15) < 0.03                      # 15 % selected
  assert (out[~w] == clean[~w]).all()                              # only targets change
  if t == "mask":
    assert (out[w] == MASK_ID).all()
  if t == "replace":
    assert ((out[w] >= SPEC.random_low) & (out[w] < SPEC.random_high)).all()
    assert (out[w] != clean[w]).mean() > 0.95
  if t == "none":
    assert (out == clean).all()
  # The selection is the same whatever R is (same key): R changes only the mask.
  ob2 = objective_batch(KEY, tokens, TRANSFORMS.index(t), 0)
  np.testing.assert_array_equal(np.asarray(ob2.weights), np.asarray(ob.weights))


def test_specials_as_a_set_not_a_range():
  # RoBERTa's <mask> is its last id: specials must come from the tokenizer's set.
  spec = O.TokenSpec(pad_id=1, mask_id=99, special_ids=(0, 1, 2, 3, 99), random_low=4,
                     random_high=99)
  seq = np.array([0, 50, 99, 60, 70, 2, 1], np.int32)
  ob = O.make_objective_batch(KEY, jnp.asarray(np.tile(seq, (500, 1))), 2, 0, spec)
  w = np.asarray(ob.weights) > 0
  assert not w[:, [0, 2, 5, 6]].any() and w[:, [1, 3, 4]].any()
