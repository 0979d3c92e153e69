"""Each transform on short sequences: hand-checked rewrites and rates over many draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.aang.space import TRANSFORMS
from aux_jax.aang.transforms import corrupt

# A layout with every special id below the regular ones (`corrupt`'s default specials).
PAD_ID, CLS_ID, SEP_ID, MASK_ID, FIRST_BYTE_ID = 0, 1, 2, 3, 4
VOCAB = FIRST_BYTE_ID + 1000          # many regular ids: a random token rarely repeats
NUM_REG = VOCAB - FIRST_BYTE_ID


def draws(transform, n=4000, seed=0):
  """n corruptions of one sequence with every kind of special token."""
  seq = np.array([CLS_ID, 10, 11, 12, 13, MASK_ID, 14, 15, 16, SEP_ID, PAD_ID, PAD_ID],
                 np.int32)
  tokens = jnp.asarray(np.tile(seq, (n, 1)))
  out, sel = corrupt(jax.random.PRNGKey(seed), tokens, TRANSFORMS.index(transform),
                     mask_id=MASK_ID, first_regular_id=FIRST_BYTE_ID, vocab_size=VOCAB)
  return seq, np.asarray(tokens), np.asarray(out), np.asarray(sel)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_rates_and_specials(transform):
  seq, tokens, out, sel = draws(transform)
  regular = seq >= FIRST_BYTE_ID
  # Special tokens (CLS, MASK, SEP, PAD) are never selected and never change.
  assert not sel[:, ~regular].any()
  np.testing.assert_array_equal(out[:, ~regular], tokens[:, ~regular])
  # Unselected tokens never change.
  np.testing.assert_array_equal(out[~sel], tokens[~sel])
  # Selection rate 15% of regular tokens: 4000 * 7 draws, std ~ 0.002.
  assert abs(sel[:, regular].mean() - 0.15) < 0.01
  s_out, s_tok = out[sel], tokens[sel]
  frac_mask = np.mean(s_out == MASK_ID)
  frac_same = np.mean(s_out == s_tok)
  frac_other = np.mean((s_out != MASK_ID) & (s_out != s_tok))
  assert ((s_out == MASK_ID) | (s_out >= FIRST_BYTE_ID)).all()
  assert (s_out < VOCAB).all()
  expected = {  # (mask, unchanged, other regular), a random id equals the original w.p. 1/V
      "none": (0.0, 1.0, 0.0),
      "replace": (0.0, 1 / NUM_REG, 1 - 1 / NUM_REG),
      "mask": (1.0, 0.0, 0.0),
      "bert": (0.8, 0.1 + 0.1 / NUM_REG, 0.1 * (1 - 1 / NUM_REG)),
  }[transform]
  np.testing.assert_allclose([frac_mask, frac_same, frac_other], expected, atol=0.02)


def test_traced_code_matches_constant_and_key_determinism():
  tokens = jnp.asarray(np.random.default_rng(0).integers(FIRST_BYTE_ID, VOCAB, (8, 16)),
                       jnp.int32)
  key = jax.random.PRNGKey(3)
  f = jax.jit(lambda t: corrupt(key, tokens, t, mask_id=MASK_ID,
                                first_regular_id=FIRST_BYTE_ID, vocab_size=VOCAB))
  for code in range(4):
    a = f(jnp.int32(code))
    b = corrupt(key, tokens, code, mask_id=MASK_ID, first_regular_id=FIRST_BYTE_ID,
                vocab_size=VOCAB)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  # Same key, same selection across transforms: only the rewrite differs.
  sel = [np.asarray(f(jnp.int32(c))[1]) for c in range(4)]
  assert all((s == sel[0]).all() for s in sel)


def test_bad_arguments():
  with pytest.raises(ValueError, match="rate"):
    corrupt(jax.random.PRNGKey(0), jnp.zeros((2,), jnp.int32), 1, mask_id=3,
            first_regular_id=4, vocab_size=10, rate=1.5)
  with pytest.raises(ValueError, match="vocab_size"):
    corrupt(jax.random.PRNGKey(0), jnp.zeros((2,), jnp.int32), 1, mask_id=3,
            first_regular_id=4, vocab_size=4)
