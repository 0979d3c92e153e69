"""Per-sample losses and evaluation statistics of every task kind.

A model produces, for task t, outputs `f32[B, ..., C_max]` from its stacked head; a
task of kind k with `C = num_outputs[t]` reads the first C outputs. Kinds and their
targets are listed in `aux_jax.data.shared_input`. Dense kinds (segmentation, depth,
normals) have per-pixel loss maps; their per-sample loss is the mean over the
sample's valid pixels (NYUv2 conventions of MTAN, Liu et al. CVPR 2019, as used by
AuxiLearn, Navon et al. ICLR 2021):

    segmentation   ℓ(p) = CE(z_p[:C], y_p)            valid: y_p ≠ −1
    depth          ℓ(p) = |ẑ_p − y_p|                  valid: y_p ≠ 0
    normal         ℓ(p) = 1 − ⟨z_p / ‖z_p‖, y_p⟩       valid: y_p ≠ 0 (the zero vector)
    regression     ℓ = Σ_d (z_d − y_d)²                (per sample, d < C)
    classification ℓ = CE(z[:C], y)
    soft_classification  ℓ = −Σ_c q_c log softmax(z[:C])_c   (q a distribution, e.g.
                   the labels an AuxiLearn labeler generates, `aux_jax.methods.taskgen`)

With ``focal_gamma`` γ > 0 the two classification kinds use the focal loss (Lin et al.,
ICCV 2017) instead, as AuxiLearn's task-generation code does (γ = 2), with p = softmax
of the task's logits: ℓ = −(1 − p_y)^γ log(p_y + 1e-12), and for soft targets
ℓ = −Σ_c q_c (1 − p_c)^γ log(p_c + 1e-12) (`focal_loss`, `soft_focal_loss`).

Dense loss conventions (``convention``; config ``data.loss_convention``): "ours" is
the table above. "original" is AuxiLearn's NYUv2 arithmetic (AvivNavon/AuxiLearn
``experiments/nyuv2/trainer.py:66-80``, ``trainer_cnn.py:60-76``), with m_p = [the
depth target at p ≠ 0] (the depth mask, every task):

    segmentation   per sample: Σ_p ℓ(p)·[y_p ≠ −1] / (H·W)   (all pixels count)
    depth          per sample: Σ_p |ẑ_p − y_p| m_p / Σ_p m_p  (as ours)
    normal         map 1 − ⟨n̂_p, y_p⟩ m_p (1 where m_p = 0);
                   per sample 1 − Σ_p ⟨n̂_p, y_p⟩ m_p / Σ_p m_p
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from aux_jax.metrics import dense

DENSE_KINDS = ("segmentation", "depth", "normal")

# Floor of ‖z‖² when normalising predicted normals: ReLU features can make z exactly 0,
# where z/‖z‖ has an unbounded gradient (and NaN at 0).
_NORMAL_EPS = 1e-6


def masked_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                         num_classes) -> jnp.ndarray:
  """Per-sample softmax cross-entropy over each task's own classes.

  With `C = num_classes` of the sample's task and `z` its logits,
  `ℓ = logsumexp(z[:C]) − z[label]`: logits at class indices `>= C` are excluded
  (a task with fewer classes than `C_max` uses the first `C` head outputs).

  Args:
    logits: `f32[..., C_max]`.
    labels: `int[...]`, in `[0, num_classes)`.
    num_classes: int, or an int array broadcastable to `labels` (e.g. `i32[T, 1]`
      for `labels` `i32[T, B]`).

  Returns:
    `f32[...]` losses.
  """
  c_max = logits.shape[-1]
  num_classes = jnp.asarray(num_classes)
  mask = jnp.arange(c_max) < num_classes[..., None]
  masked = jnp.where(mask, logits, -jnp.inf)
  return optax.softmax_cross_entropy_with_integer_labels(masked, labels)


# The originals' log floor (AuxiLearn's FocalLoss adds 1e-12 inside the log).
_FOCAL_LOG_EPS = 1e-12


def focal_loss(logits: jax.Array, labels: jax.Array, gamma: float) -> jax.Array:
  """Per-sample focal loss −(1 − p_y)^γ log(p_y + 1e-12), p = softmax(logits).

  Args: logits f32[B, C], labels int[B], gamma γ ≥ 0. Returns f32[B].
  """
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  p_y = jnp.take_along_axis(p, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return -jnp.power(1.0 - p_y, gamma) * jnp.log(p_y + _FOCAL_LOG_EPS)


def soft_focal_loss(logits: jax.Array, q: jax.Array, gamma: float) -> jax.Array:
  """Per-sample focal loss against soft targets: −Σ_c q_c (1 − p_c)^γ log(p_c + 1e-12).

  Args: logits f32[B, C], q f32[B, C] (rows distributions), gamma γ ≥ 0.
  Returns f32[B].
  """
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(q * jnp.power(1.0 - p, gamma) * jnp.log(p + _FOCAL_LOG_EPS), axis=-1)


def unit_normals(z: jax.Array) -> jax.Array:
  """`z / sqrt(‖z‖² + ε)` on the last axis: predicted unit normals, bounded gradient."""
  return z * jax.lax.rsqrt(jnp.sum(jnp.square(z), -1, keepdims=True) + _NORMAL_EPS)


LOSS_CONVENTIONS = ("ours", "original")


def depth_mask(depth_target: jax.Array) -> jax.Array:
  """f32[B, H, W]: 1 where the depth target f32[B, H, W, C] is nonzero (AuxiLearn's
  ``binary_mask``)."""
  return jnp.any(depth_target != 0, axis=-1).astype(jnp.float32)


def loss_map(kind: str, outputs: jax.Array, target: jax.Array, num_outputs: int,
             convention: str = "ours", mask: jax.Array | None = None
             ) -> tuple[jax.Array, jax.Array]:
  """Per-pixel losses of a dense task and the pixels its per-sample loss averages.

  Args:
    kind: one of `DENSE_KINDS`.
    outputs: `f32[B, H, W, C_max]`.
    target: `i32[B, H, W]` (segmentation) or `f32[B, H, W, C]`.
    num_outputs: `C`.
    convention: "ours" or "original" (module docstring).
    mask: the depth mask f32[B, H, W] (`depth_mask`), needed by "original" for
      depth and normals.

  Returns:
    ``(f32[B, H, W] losses, f32[B, H, W] weights)``; the per-sample loss is
    Σ losses·weights / Σ weights. "ours": losses 0 where invalid, weights the valid
    mask. "original": segmentation weights 1 everywhere (ignored pixels carry 0),
    depth and normals weighted by the depth mask, the normal map 1 outside it.
  """
  if convention not in LOSS_CONVENTIONS:
    raise ValueError(f"loss convention must be one of {LOSS_CONVENTIONS}, got "
                     f"{convention!r}")
  z = outputs[..., :num_outputs].astype(jnp.float32)
  original = convention == "original"
  if kind == "segmentation":
    valid = target >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(z, jnp.where(valid, target, 0))
    weights = jnp.ones_like(ce) if original else valid.astype(jnp.float32)
    return jnp.where(valid, ce, 0.0), weights
  if kind not in ("depth", "normal"):
    raise ValueError(f"loss_map needs a dense kind {DENSE_KINDS}, got {kind!r}")
  if original and mask is None:
    raise ValueError(f"the original loss convention needs the depth mask for {kind}")
  valid = mask if original else jnp.any(target != 0, axis=-1).astype(jnp.float32)
  if kind == "depth":
    return jnp.sum(jnp.abs(z - target), axis=-1) * valid, valid
  dot = jnp.sum(unit_normals(z) * target, axis=-1)
  return (1.0 - dot * valid if original else (1.0 - dot) * valid), valid


def per_sample_loss(kind: str, outputs: jax.Array, target: jax.Array, num_outputs: int,
                    focal_gamma: float = 0.0, convention: str = "ours",
                    mask: jax.Array | None = None) -> jax.Array:
  """`f32[B]`: each sample's loss for a task of ``kind`` (see the module docstring);
  ``focal_gamma`` > 0: focal losses for the classification kinds; ``convention``,
  ``mask``: of dense kinds (`loss_map`)."""
  if focal_gamma and kind == "classification":
    return focal_loss(outputs[..., :num_outputs], target, focal_gamma)
  if focal_gamma and kind == "soft_classification":
    return soft_focal_loss(outputs[..., :num_outputs], target, focal_gamma)
  if kind == "classification":
    return masked_cross_entropy(outputs, target, num_outputs)
  if kind == "regression":
    z = outputs[..., :num_outputs].astype(jnp.float32)
    return jnp.sum(jnp.square(z - target), axis=-1)
  if kind == "soft_classification":
    z = outputs[..., :num_outputs].astype(jnp.float32)
    return -jnp.sum(target * jax.nn.log_softmax(z, axis=-1), axis=-1)
  if kind in DENSE_KINDS:
    losses, weights = loss_map(kind, outputs, target, num_outputs, convention, mask)
    axes = tuple(range(1, losses.ndim))
    return (jnp.sum(losses * weights, axes)
            / jnp.maximum(jnp.sum(weights, axes), 1.0))
  raise ValueError(f"unknown task kind {kind!r}")


def eval_stats(kind: str, outputs: jax.Array, target: jax.Array, num_outputs: int,
               mask: jax.Array) -> dict:
  """Additive evaluation statistics of one batch (sum them over batches).

  Args:
    mask: `f32[B]`, 0 for padding rows.

  Returns:
    A dict of arrays; `finalize_stats` turns the sums into metrics.
  """
  loss = jnp.sum(mask * per_sample_loss(kind, outputs, target, num_outputs))
  out = {"loss": loss, "count": jnp.sum(mask)}
  z = outputs[..., :num_outputs].astype(jnp.float32)
  keep = mask.reshape((-1,) + (1,) * (target.ndim - 1)) > 0
  if kind == "classification":
    out["correct"] = jnp.sum(mask * (jnp.argmax(z, -1) == target))
  elif kind == "soft_classification":  # the prediction agrees with the target's mode
    out["correct"] = jnp.sum(mask * (jnp.argmax(z, -1) == jnp.argmax(target, -1)))
  elif kind == "regression":
    out["sq_err"] = jnp.sum(mask * jnp.mean(jnp.square(z - target), -1))
  elif kind == "segmentation":
    pred = jnp.argmax(z, -1)
    out["conf"] = dense.confusion_matrix(pred, jnp.where(keep, target, -1), num_outputs)
    per_image = dense.per_image_segmentation(pred, target, num_outputs)
    out["miou_per_image"] = jnp.sum(mask * per_image["miou"])
    out["pixel_acc_per_image"] = jnp.sum(mask * per_image["pixel_acc"])
  elif kind == "depth":
    out["depth"] = dense.depth_error_sums(z, jnp.where(keep, target, 0.0))
  elif kind == "normal":
    out["normal"] = dense.normal_stats(unit_normals(z), jnp.where(keep, target, 0.0))
  return out


def finalize_stats(kind: str, stats: dict) -> dict[str, float]:
  """Metrics from summed `eval_stats` (higher-is-better keys for model selection:
  accuracy, neg_loss (classification: ATTITTUD selects on the monitor loss),
  neg_mse, miou_dataset, miou_per_image, pixel_acc_dataset,
  pixel_acc_per_image, neg_abs_err, neg_mean_angle).

  Segmentation has two mIoUs, named apart: ``miou_dataset`` (one confusion matrix
  over every labelled pixel of the split, `aux_jax.metrics.dense.segmentation_metrics`)
  and ``miou_per_image`` (AuxiLearn's: each image's mIoU over the classes in its label
  or prediction, averaged over images, `dense.per_image_segmentation`); likewise
  ``pixel_acc_dataset`` and ``pixel_acc_per_image``."""
  n = max(float(stats["count"]), 1.0)
  out = {"loss": float(stats["loss"]) / n}
  if kind in ("classification", "soft_classification"):
    out["accuracy"] = float(stats["correct"]) / n
    out["neg_loss"] = -out["loss"]
  elif kind == "regression":
    out["mse"] = float(stats["sq_err"]) / n
    out["neg_mse"] = -out["mse"]
  elif kind == "segmentation":
    out.update({f"{k}_dataset": float(v)
                for k, v in dense.segmentation_metrics(stats["conf"]).items()})
    out["miou_per_image"] = float(stats["miou_per_image"]) / n
    out["pixel_acc_per_image"] = float(stats["pixel_acc_per_image"]) / n
  elif kind == "depth":
    out.update({k: float(v) for k, v in dense.depth_metrics(stats["depth"]).items()})
    out["neg_abs_err"] = -out["abs_err"]
  elif kind == "normal":
    m = dense.normal_metrics_from_stats(stats["normal"])
    out.update({f"angle_{k}": float(v) for k, v in m.items()})
    out["neg_mean_angle"] = -out["angle_mean"]
  return out


def default_select(kind: str) -> str:
  """The dev metric that selects the model for a main task of ``kind``."""
  return {"classification": "accuracy", "soft_classification": "accuracy",
          "regression": "neg_mse", "segmentation": "miou_dataset",
          "depth": "neg_abs_err", "normal": "neg_mean_angle"}[kind]
