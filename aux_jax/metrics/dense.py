"""Dense-prediction metrics for NYUv2-style multi-task evaluation (pure jnp).

Conventions follow the MTAN evaluation (Liu et al., CVPR 2019) used by AuxiLearn
(Navon et al., ICLR 2021) on NYUv2:

* Semantic segmentation: a confusion matrix over pixels whose label is in [0, C)
  (label −1 = ignore), then mean IoU and pixel accuracy.
* Depth: absolute and relative error over pixels with ground-truth depth ≠ 0.
* Surface normals: the angle between predicted and ground-truth normals (both unit
  vectors on the last axis) over pixels whose ground-truth normal is not the zero
  vector; mean, median and the fraction of pixels within 11.25°, 22.5° and 30°.

Every metric comes as sufficient statistics that add up across batches (a confusion
matrix, sums and counts, a histogram of angles) plus a function turning them into the
final numbers, so a whole evaluation set is reduced exactly over pixels. (MTAN instead
averages per-batch values; call the ``*_metrics`` functions per batch and average to
reproduce that.) All functions are jittable; counts are int32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)


def _nan_if_empty(value: jax.Array, count: jax.Array) -> jax.Array:
  return jnp.where(count > 0, value, jnp.nan)


# ------------------------------------------------------------------ segmentation


def confusion_matrix(pred: jax.Array, label: jax.Array, num_classes: int) -> jax.Array:
  """Pixel confusion matrix, rows = ground truth, columns = prediction.

  Args:
    pred: int[...] predicted classes in [0, C) (e.g. ``argmax(logits, -1)``).
    label: int[...] ground truth, same shape; values outside [0, C) (−1) are ignored.
    num_classes: C.

  Returns:
    i32[C, C] with M[i, j] = #{pixels with label i predicted j}. Sum across batches.
  """
  if pred.shape != label.shape:
    raise ValueError(f"pred {pred.shape} and label {label.shape} must have one shape")
  pred = pred.reshape(-1).astype(jnp.int32)
  label = label.reshape(-1).astype(jnp.int32)
  valid = (label >= 0) & (label < num_classes) & (pred >= 0) & (pred < num_classes)
  index = jnp.where(valid, label * num_classes + pred, 0)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(
      valid.astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def segmentation_metrics(conf: jax.Array) -> dict[str, jax.Array]:
  """mIoU and pixel accuracy from a confusion matrix.

      IoU_c = M_cc / (Σ_j M_cj + Σ_i M_ic − M_cc),   mIoU = mean of IoU_c over the
      classes that occur (label or prediction),      pixel_acc = Σ_c M_cc / Σ M.

  Args:
    conf: int[C, C] from `confusion_matrix` (summed over batches).

  Returns:
    {"miou": f32[], "pixel_acc": f32[]}; NaN when the matrix is empty.
  """
  conf = conf.astype(jnp.float32)
  tp = jnp.diag(conf)
  union = conf.sum(0) + conf.sum(1) - tp
  present = union > 0
  iou = jnp.where(present, tp / jnp.maximum(union, 1.0), 0.0)
  n_present = jnp.sum(present)
  total = jnp.sum(conf)
  return {
      "miou": _nan_if_empty(jnp.sum(iou) / jnp.maximum(n_present, 1), n_present),
      "pixel_acc": _nan_if_empty(jnp.sum(tp) / jnp.maximum(total, 1.0), total),
  }


def per_image_segmentation(pred: jax.Array, label: jax.Array, num_classes: int
                           ) -> dict[str, jax.Array]:
  """mIoU and pixel accuracy of each image, as AuxiLearn's NYUv2 code computes them
  (its ``compute_miou`` / ``compute_iou``), to be averaged over images.

  For image n and class c, over **all** its pixels (ignored ones, label −1, included:
  a prediction of c there enlarges c's union):

      I_c = #{pred = c ∧ label = c},  U_c = #{pred = c ∨ label = c},
      miou_n = mean of I_c / U_c over the classes with U_c > 0 (present in the label or
      the prediction of that image),
      pixel_acc_n = #{pred = label} / #{label ≥ 0}.

  This differs from `segmentation_metrics` (one confusion matrix over the whole set,
  ignored pixels removed): name the two apart.

  Args:
    pred: int[N, ...] predicted classes.
    label: int[N, ...] ground truth, −1 (or any value outside [0, C)) = ignored.
    num_classes: C.

  Returns:
    {"miou": f32[N], "pixel_acc": f32[N]} (0 for an image without a class present).
  """
  if pred.shape != label.shape:
    raise ValueError(f"pred {pred.shape} and label {label.shape} must have one shape")
  n = pred.shape[0]
  pred = pred.reshape(n, -1).astype(jnp.int32)
  label = label.reshape(n, -1).astype(jnp.int32)
  classes = jnp.arange(num_classes)[:, None, None]           # [C, 1, 1]
  is_p, is_l = pred[None] == classes, label[None] == classes  # [C, N, P]
  inter = jnp.sum(is_p & is_l, -1).astype(jnp.float32)      # [C, N]
  union = jnp.sum(is_p | is_l, -1).astype(jnp.float32)
  present = union > 0
  iou = jnp.where(present, inter / jnp.maximum(union, 1.0), 0.0)
  miou = jnp.sum(iou, 0) / jnp.maximum(jnp.sum(present, 0), 1)
  labelled = jnp.sum(label >= 0, -1).astype(jnp.float32)
  correct = jnp.sum((pred == label) & (label >= 0), -1).astype(jnp.float32)
  return {"miou": miou, "pixel_acc": correct / jnp.maximum(labelled, 1.0)}


# ------------------------------------------------------------------------- depth


def depth_error_sums(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Sums for depth errors over valid pixels (target ≠ 0).

  Args:
    pred: f32[...] predicted depth (e.g. f32[B, H, W, 1]).
    target: f32[...] ground truth, same shape; 0 marks a missing value.

  Returns:
    f32[3]: (Σ |pred − target|, Σ |pred − target| / |target|, #valid). Add across
    batches, then call `depth_metrics`.
  """
  if pred.shape != target.shape:
    raise ValueError(f"pred {pred.shape} and target {target.shape} must have one shape")
  valid = target != 0
  diff = jnp.where(valid, jnp.abs(pred - target), 0.0)
  rel = diff / jnp.where(valid, jnp.abs(target), 1.0)
  return jnp.stack([jnp.sum(diff), jnp.sum(rel),
                    jnp.sum(valid).astype(diff.dtype)]).astype(jnp.float32)


def depth_metrics(sums: jax.Array) -> dict[str, jax.Array]:
  """{"abs_err", "rel_err"}: mean absolute and relative error (NaN if no valid pixel)."""
  abs_sum, rel_sum, count = sums[0], sums[1], sums[2]
  denom = jnp.maximum(count, 1.0)
  return {"abs_err": _nan_if_empty(abs_sum / denom, count),
          "rel_err": _nan_if_empty(rel_sum / denom, count)}


# ----------------------------------------------------------------------- normals


def normal_angle_errors(pred: jax.Array, target: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
  """Angle between predicted and ground-truth normals.

      err = (180/π) · arccos(clip(⟨n̂, n⟩, −1, 1))

  Args:
    pred: f32[..., 3] predicted unit normals.
    target: f32[..., 3] ground-truth unit normals; the zero vector marks a missing one.

  Returns:
    (f32[...] angles in degrees, bool[...] valid mask).
  """
  if pred.shape != target.shape or pred.shape[-1] != 3:
    raise ValueError(
        f"pred {pred.shape} and target {target.shape} must both be f32[..., 3]")
  cos = jnp.clip(jnp.sum(pred * target, axis=-1), -1.0, 1.0)
  return jnp.degrees(jnp.arccos(cos)), jnp.any(target != 0, axis=-1)


def normal_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  """Exact normal metrics over the valid pixels of one array (e.g. one batch).

  Args:
    pred, target: f32[..., 3] as in `normal_angle_errors`.

  Returns:
    {"mean", "median"} in degrees and {"within_11_25", "within_22_5", "within_30"},
    the fraction of valid pixels with error < threshold; NaN if no valid pixel.
  """
  err, valid = normal_angle_errors(pred, target)
  err, valid = err.reshape(-1), valid.reshape(-1)
  n = jnp.sum(valid)
  ordered = jnp.sort(jnp.where(valid, err, jnp.inf))
  median = 0.5 * (ordered[jnp.maximum(n - 1, 0) // 2] + ordered[n // 2])
  denom = jnp.maximum(n, 1)
  out = {"mean": jnp.sum(jnp.where(valid, err, 0.0)) / denom, "median": median}
  for t in NORMAL_THRESHOLDS:
    out[_within_key(t)] = jnp.sum(valid & (err < t)) / denom
  return {k: _nan_if_empty(v.astype(jnp.float32), n) for k, v in out.items()}


def _within_key(threshold: float) -> str:
  return "within_" + f"{threshold:g}".replace(".", "_")


class NormalStats(NamedTuple):
  """Additive statistics of normal errors (sum two with ``jax.tree.map(jnp.add, a, b)``).

  Attributes:
    sum_deg: f32[], Σ err over valid pixels.
    count: i32[], #valid pixels.
    within: i32[3], #valid pixels with err < 11.25°, 22.5°, 30°.
    hist: i32[num_bins], histogram of err over [0°, 180°] (for the median).
  """

  sum_deg: jax.Array
  count: jax.Array
  within: jax.Array
  hist: jax.Array


def normal_stats(pred: jax.Array, target: jax.Array, num_bins: int = 3600
                 ) -> NormalStats:
  """Accumulable normal-error statistics; the median's resolution is 180°/num_bins."""
  err, valid = normal_angle_errors(pred, target)
  err, valid = err.reshape(-1), valid.reshape(-1)
  ones = valid.astype(jnp.int32)
  bins = jnp.clip((err * (num_bins / 180.0)).astype(jnp.int32), 0, num_bins - 1)
  return NormalStats(
      sum_deg=jnp.sum(jnp.where(valid, err, 0.0)).astype(jnp.float32),
      count=jnp.sum(ones),
      within=jnp.stack([jnp.sum(ones * (err < t)) for t in NORMAL_THRESHOLDS]),
      hist=jnp.zeros(num_bins, jnp.int32).at[bins].add(ones))


def normal_metrics_from_stats(stats: NormalStats) -> dict[str, jax.Array]:
  """The `normal_metrics` dict from accumulated `NormalStats`.

  The mean and the fractions are exact; the median is interpolated linearly inside
  the histogram bin holding the middle rank (error ≤ one bin width, 180°/num_bins).
  """
  num_bins = stats.hist.shape[0]
  width = 180.0 / num_bins
  count = stats.count
  denom = jnp.maximum(count, 1).astype(jnp.float32)
  cdf = jnp.cumsum(stats.hist)
  half = count.astype(jnp.float32) / 2.0
  i = jnp.argmax(cdf >= half)
  below = jnp.where(i > 0, cdf[jnp.maximum(i - 1, 0)], 0).astype(jnp.float32)
  frac = (half - below) / jnp.maximum(stats.hist[i], 1).astype(jnp.float32)
  out = {"mean": stats.sum_deg / denom, "median": (i + frac) * width}
  for t, c in zip(NORMAL_THRESHOLDS, stats.within):
    out[_within_key(t)] = c.astype(jnp.float32) / denom
  return {k: _nan_if_empty(jnp.asarray(v, jnp.float32), count) for k, v in out.items()}
