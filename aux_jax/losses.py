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
    multilabel     ℓ = (1/L) Σ_{l<L} BCE(z_l, y_l),  BCE(z, y) = −y log σ(z) − (1−y) log σ(−z)
                   (L independent binary labels y ∈ {0,1}^L, e.g. CheXpert's 5 findings
                   in ATTITTUD; PyTorch's BCEWithLogitsLoss averaged over the labels)

Multilabel evaluation: the mean label accuracy (σ(z) > 0.5) and the ROC AUC of each
label (`roc_auc`, the probability that a positive scores above a negative, ties
½: scikit-learn's ``roc_auc_score``) and their mean ``auc`` (the selection metric);
AUC needs every score of the split, so its statistics are rows (`ROWS`) concatenated
over batches by `accumulate`, not sums.

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
import numpy as np
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


def multilabel_bce(logits: jax.Array, targets: jax.Array, num_labels) -> jax.Array:
  """Per-sample binary cross-entropy with logits, averaged over each task's labels.

  Args:
    logits: `f32[..., C_max]`.
    targets: `f32[..., C_max]` in {0, 1} (entries at ``l >= num_labels`` ignored).
    num_labels: L, an int or an int array broadcastable to ``logits.shape[:-1]``.

  Returns:
    `f32[...]`: (1/L) Σ_{l<L} [softplus(z_l) − y_l z_l] (= −y log σ(z) − (1−y) log σ(−z)).
  """
  z = logits.astype(jnp.float32)
  num_labels = jnp.asarray(num_labels)
  mask = jnp.arange(z.shape[-1]) < num_labels[..., None]
  bce = jax.nn.softplus(z) - targets.astype(jnp.float32) * z
  return jnp.sum(jnp.where(mask, bce, 0.0), -1) / num_labels.astype(jnp.float32)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC of one binary label: the Mann–Whitney statistic with average ranks,
  P(score of a positive > score of a negative) + ½ P(equal) — scikit-learn's
  ``roc_auc_score``. NaN when ``labels`` has only one class (AUC undefined; scikit-learn
  raises).

  Args: scores f[N]; labels {0, 1}[N].
  """
  scores = np.asarray(scores, np.float64)
  pos = np.asarray(labels) > 0.5
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(len(scores))
  # Average 1-based ranks over runs of equal scores.
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
  ends = np.r_[starts[1:], len(scores)]
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# eval_stats entries that are per-example rows (concatenated by `accumulate`).
ROWS = "rows"


def accumulate(total, stats):
  """Adds one batch's `eval_stats` to the running ``total`` (None at first): sums,
  except the per-example ``ROWS`` entries, which are concatenated."""
  if total is None:
    return stats
  if isinstance(stats, (list, tuple)):
    return type(stats)(accumulate(a, b) for a, b in zip(total, stats))
  return {k: (jax.tree.map(lambda a, b: jnp.concatenate([a, b]), total[k], v) if k == ROWS
              else jax.tree.map(jnp.add, total[k], v)) for k, v in stats.items()}


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


def _pad_last(target: jax.Array, size: int) -> jax.Array:
  """``f32[..., L]`` targets zero-padded to ``f32[..., size]`` (the head's C_max)."""
  pad = size - target.shape[-1]
  return jnp.pad(target, [(0, 0)] * (target.ndim - 1) + [(0, pad)]) if pad else target


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
  if kind == "multilabel":
    return multilabel_bce(outputs, _pad_last(target, outputs.shape[-1]), num_outputs)
  if kind in DENSE_KINDS:
    losses, weights = loss_map(kind, outputs, target, num_outputs, convention, mask)
    axes = tuple(range(1, losses.ndim))
    return (jnp.sum(losses * weights, axes)
            / jnp.maximum(jnp.sum(weights, axes), 1.0))
  raise ValueError(f"unknown task kind {kind!r}")


def eval_stats(kind: str, outputs: jax.Array, target: jax.Array, num_outputs: int,
               mask: jax.Array) -> dict:
  """Evaluation statistics of one batch (combine batches with `accumulate`: sums,
  and per-example ``ROWS`` concatenated).

  Args:
    mask: `f32[B]`, 0 for padding rows.

  Returns:
    A dict of arrays; `finalize_stats` turns the totals into metrics.
  """
  loss = jnp.sum(mask * per_sample_loss(kind, outputs, target, num_outputs))
  out = {"loss": loss, "count": jnp.sum(mask)}
  z = outputs[..., :num_outputs].astype(jnp.float32)
  keep = mask.reshape((-1,) + (1,) * (target.ndim - 1)) > 0
  if kind == "classification":
    out["correct"] = jnp.sum(mask * (jnp.argmax(z, -1) == target))
  elif kind == "soft_classification":  # the prediction agrees with the target's mode
    out["correct"] = jnp.sum(mask * (jnp.argmax(z, -1) == jnp.argmax(target, -1)))
  elif kind == "multilabel":  # mean label accuracy; scores and labels for the AUC
    y = target.astype(jnp.float32)
    out["label_correct"] = jnp.sum(mask * jnp.mean((z > 0) == (y > 0.5), -1))
    out[ROWS] = {"scores": jax.nn.sigmoid(z), "labels": y, "mask": mask}
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
  accuracy, neg_loss (classification, multilabel: ATTITTUD selects on the monitor
  loss), auc (multilabel),
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
  elif kind == "multilabel":
    out["label_accuracy"] = float(stats["label_correct"]) / n
    out["neg_loss"] = -out["loss"]
    rows = jax.tree.map(np.asarray, stats[ROWS])
    keep = rows["mask"] > 0
    aucs = [roc_auc(rows["scores"][keep, l], rows["labels"][keep, l])
            for l in range(rows["scores"].shape[-1])]
    out.update({f"auc_label{l}": a for l, a in enumerate(aucs)})
    # The mean over the labels whose AUC is defined (both classes in the split).
    defined = [a for a in aucs if not np.isnan(a)]
    out["auc"] = float(np.mean(defined)) if defined else float("nan")
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
          "multilabel": "auc",
          "regression": "neg_mse", "segmentation": "miou_dataset",
          "depth": "neg_abs_err", "normal": "neg_mean_angle"}[kind]
