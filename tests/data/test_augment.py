"""Tests of random_crop_flip: every output is a shifted (and maybe mirrored) window."""

import jax
import numpy as np
import pytest

from aux_jax.data import augment

random_crop_flip = jax.jit(augment.random_crop_flip, static_argnums=2)


def _find_window(out, padded, pad):
  h, w = out.shape[:2]
  hits = []
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      win = padded[dy : dy + h, dx : dx + w]
      for flip in (False, True):
        if np.array_equal(out, win[:, ::-1] if flip else win):
          hits.append((dy, dx, flip))
  return hits


def test_outputs_are_windows_of_the_padded_input():
  pad = 2
  rng = np.random.default_rng(0)
  images = rng.uniform(1, 2, (2, 6, 5, 5, 3)).astype(np.float32)  # [T, B, H, W, C]
  out = np.asarray(random_crop_flip(jax.random.key(0), images, pad))
  assert out.shape == images.shape and out.dtype == images.dtype
  found = []
  for t in range(2):
    for b in range(6):
      padded = np.pad(images[t, b], ((pad, pad), (pad, pad), (0, 0)))
      hits = _find_window(out[t, b], padded, pad)
      assert len(hits) == 1, f"image {t, b} is not a unique window of its padded input"
      found.append(hits[0])
  # Independent per image: the 12 images do not all share one crop and flip.
  assert len(set(found)) > 1
  assert {f for _, _, f in found} == {False, True}


def test_offsets_cover_the_range_and_keys_matter():
  pad = 1
  x = np.arange(200 * 4 * 4, dtype=np.float32).reshape(200, 4, 4, 1) + 1
  out = np.asarray(random_crop_flip(jax.random.key(1), x, pad))
  seen = set()
  for i in range(200):
    padded = np.pad(x[i], ((pad, pad), (pad, pad), (0, 0)))
    (hit,) = _find_window(out[i], padded, pad)
    seen.add(hit)
  assert len(seen) == 9 * 2  # every offset and flip occurs
  out2 = np.asarray(random_crop_flip(jax.random.key(2), x, pad))
  assert not np.array_equal(out, out2)
  np.testing.assert_array_equal(out, np.asarray(random_crop_flip(jax.random.key(1), x, pad)))


def test_uint8_input_and_bad_shape():
  x = np.full((3, 4, 4, 1), 7, np.uint8)
  out = np.asarray(random_crop_flip(jax.random.key(0), x, 2))
  assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 7}
  with pytest.raises(ValueError, match="H, W, C"):
    augment.random_crop_flip(jax.random.key(0), np.zeros((4, 4)), 1)
