"""Random crop pads the raw image with black (0) before normalisation, as the
originals' torchvision ``RandomCrop(padding=4)`` on the uint8 image."""

import dataclasses

import numpy as np

from aux_jax.data import get_dataset
from aux_jax.train.experiment import build_experiment
from configs import maoal_digits


def test_crop_padding_is_black_before_normalisation():
  c = maoal_digits.get_config("stl")
  c.data.augment, c.data.crop_pad = True, 2
  data = get_dataset("digits")
  white = np.full_like(data.train_images, 255)
  data = dataclasses.replace(data, train_images=white)
  exp = build_experiment(c, data)
  state = exp.init()
  x = np.asarray(exp.losses_at(state, 0).inputs)  # [T, B, 8, 8, 1], normalised
  mean, std = float(data.mean[0]), float(data.std[0])
  black, lit = (0.0 - mean) / std, (255.0 - mean) / std
  is_black, is_lit = np.isclose(x, black, atol=1e-5), np.isclose(x, lit, atol=1e-5)
  assert np.all(is_black | is_lit)   # padding normalised like a black pixel, not 0
  assert is_black.any() and is_lit.any()
  # NumPy: an image cropped at offsets (dy, dx) of a pad-2 frame has |dy−2| black rows.
  rows_black = is_black.all(axis=(3, 4)).sum(-1)      # full black rows per image
  assert rows_black.max() <= 2 and rows_black.max() >= 1
