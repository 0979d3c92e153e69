"""Search-space enumeration and validity, against a brute force over the product."""

import itertools

import numpy as np
import pytest

from aux_jax.aang import space as S


def brute_force_valid(i, t, r, o):
  """The validity rules written independently of the library."""
  if o == "supervised" and i != "task":
    return False
  if o == "supervised" and r in ("left_to_right", "right_to_left"):
    return False
  return True


@pytest.mark.parametrize("name,inputs", [("citation.supervised", ("task",)),
                                         ("citation.all", ("task", "in_domain"))])
def test_enumeration_matches_brute_force(name, inputs):
  sp = S.get_space(name)
  outputs = ("supervised", "denoise")
  expected = [c for c in itertools.product(inputs, S.TRANSFORMS, S.REPRESENTATIONS, outputs)
              if brute_force_valid(*c)]
  assert sp.objectives() == expected
  mask = sp.valid_mask()
  assert mask.shape == (len(inputs), 4, 4, 2)
  for idx in itertools.product(*(range(n) for n in mask.shape)):
    combo = tuple(axis[k] for axis, k in zip(sp.axes, idx))
    assert mask[idx] == brute_force_valid(*combo), combo


def test_citation_counts():
  assert len(S.get_space("citation.supervised")) == 24
  assert len(S.get_space("citation.all")) == 40           # 8 supervised + 2*4*4 denoise
  assert len(S.get_space("citation.supervised", drop_identity_denoise=True)) == 23
  for name in ("tapt", "gpt", "xlnet"):
    assert len(S.get_space(name)) == 1
  sp = S.get_space("citation.supervised")
  outs = [o[3] for o in sp.objectives()]
  assert outs.count("denoise") == 16 and outs.count("supervised") == 8


def test_illegal_combinations_masked():
  sp = S.get_space("citation.all")
  for t in S.TRANSFORMS:
    for r in ("left_to_right", "right_to_left"):
      assert not sp.is_valid(("task", t, r, "supervised"))
    assert not sp.is_valid(("in_domain", t, "bidirectional", "supervised"))
    # A supervised head on a corrupted input is legal (as in the original's 24).
    assert sp.is_valid(("task", t, "random_factorized", "supervised"))
    for r in S.REPRESENTATIONS:
      assert sp.is_valid(("in_domain", t, r, "denoise"))
  assert not S.get_space("citation.supervised").is_valid(
      ("in_domain", "none", "bidirectional", "denoise"))  # not in the axes


def test_extra_rules_and_table():
  sp = S.make_space(("task",), ("none", "mask"), ("bidirectional", "left_to_right"),
                    ("denoise",), extra_rules=[{"transform": "none",
                                                "representation": "bidirectional"}])
  assert sp.objectives() == [("task", "none", "left_to_right", "denoise"),
                             ("task", "mask", "bidirectional", "denoise"),
                             ("task", "mask", "left_to_right", "denoise")]
  tab = sp.table()
  np.testing.assert_array_equal(tab.factors, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0]])
  # Global codes index the library-wide name tuples.
  np.testing.assert_array_equal(tab.transform, [0, 2, 2])
  np.testing.assert_array_equal(tab.representation, [1, 0, 1])
  np.testing.assert_array_equal(tab.output, [0, 0, 0])
  assert sp.names()[0] == "task|none|left_to_right|denoise"


def test_bad_spaces_raise():
  with pytest.raises(ValueError, match="Unknown transform"):
    S.make_space(("task",), ("blur",), ("bidirectional",), ("denoise",))
  with pytest.raises(ValueError, match="empty"):
    S.make_space(("task",), (), ("bidirectional",), ("denoise",))
  with pytest.raises(ValueError, match="Unknown search space"):
    S.get_space("nope")
  with pytest.raises(ValueError, match="no valid objective"):
    S.make_space(("in_domain",), ("none",), ("bidirectional",), ("supervised",)).table()
