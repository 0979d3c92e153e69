"""Random crop pads the raw image with black (0) before normalisation, as the
originals' torchvision ``RandomCrop(padding=4)`` on the uint8 image."""

import jax
import numpy as np

from aux_jax.data.multitask import MultiTaskData
from aux_jax.train.problems import augment_then_preprocess


def test_crop_padding_is_black_before_normalisation():
  mean, std = np.array([100.0, 50.0], np.float32), np.array([40.0, 20.0], np.float32)
  x = np.full((1, 2, 1, 4, 4, 2), 255, np.uint8)   # white; x[0]: [T=2, B=1, H, W, C]
  data = MultiTaskData(
      train_images=x[0, :1], train_labels=np.zeros((1, 1), np.int32),
      train_counts=np.array([1], np.int32), num_classes=np.array([2], np.int32),
      dev_images=x[0, 0], dev_labels=np.zeros(1, np.int32), test_images=x[0, 0],
      test_labels=np.zeros(1, np.int32), task_names=("main",), mean=mean, std=std)
  pad = 2
  key = jax.random.key(3)
  out = np.asarray(augment_then_preprocess(data, x[0], key, True, pad, np.float32))
  # NumPy: pad the raw image with 0, cut the window at the same offsets, flip, normalise.
  k_off, k_flip = jax.random.split(key)
  offsets = np.asarray(jax.random.randint(k_off, (2, 2), 0, 2 * pad + 1))
  flips = np.asarray(jax.random.bernoulli(k_flip, 0.5, (2,)))
  for b in range(2):
    img = np.pad(x[0, b, 0].astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    dy, dx = offsets[b]
    win = img[dy:dy + 4, dx:dx + 4]
    win = win[:, ::-1] if flips[b] else win
    np.testing.assert_allclose(out[b, 0], (win - mean) / std, rtol=1e-6)
  black = (0.0 - mean) / std
  assert np.isclose(out, black).any()  # some padding was cut in, as black
  np.testing.assert_allclose(augment_then_preprocess(data, x[0], key, False, pad, np.float32),
                             np.broadcast_to((255.0 - mean) / std, out.shape), rtol=1e-6)
