"""Auxiliary-task generation: a labeler network invents the auxiliary labels.

AuxiLearn (Navon et al., ICLR 2021, "learning a novel auxiliary task"), in the spirit
of MAXL (Liu et al., NeurIPS 2019): when no auxiliary task is given, a labeler network
g_φ assigns every training image x with main label y ∈ {0..C-1} a distribution over k
*sub-classes of y*. The C·k auxiliary classes are laid out class-major: sub-class
j ∈ {0..k-1} of main class c is auxiliary class c·k + j. With labeler logits
z ∈ R^{C·k},

    q(x, y)_{c·k+j} = [c = y] · exp z_{y·k+j} / Σ_{j'} exp z_{y·k+j'}      (masked softmax)

so all mass lies on y's own k sub-classes. The primary network has an auxiliary head
with logits a ∈ R^{C·k} trained on q by soft cross-entropy

    ℓ_aux(x) = −Σ_i q_i log softmax(a)_i ,

alongside the main loss (combined, e.g., by an `aux_jax.auxnets` network or a fixed
weight). The labeler's φ gets the implicit hypergradient of the main-task loss on the
held-out set through L_T(θ, φ), exactly as the loss-combining networks do
(`aux_jax.hypergrad`). The soft labels q stay differentiable in φ; they are not
sampled or arg-maxed.

No entropy regulariser is added: AuxiLearn uses none (MAXL uses one against collapse
onto a single sub-class). A user who wants one can add it to the upper-level
objective. The method that trains the primary network and the labeler is
`aux_jax.methods.taskgen`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _check_logits(logits: jax.Array, main_labels: jax.Array, num_subclasses: int):
  if num_subclasses < 1:
    raise ValueError(f"num_subclasses (k) must be >= 1; got {num_subclasses}")
  if logits.ndim != 2 or logits.shape[-1] % num_subclasses:
    raise ValueError(
        f"logits must be f32[B, C*k] with k = {num_subclasses}; got shape "
        f"{logits.shape}")
  if main_labels.shape != logits.shape[:1]:
    raise ValueError(
        f"main_labels must be int[B] with B = {logits.shape[0]}; got shape "
        f"{main_labels.shape}")


def masked_softmax(logits: jax.Array, main_labels: jax.Array, num_subclasses: int
                   ) -> jax.Array:
  """Distribution over the k sub-classes of each sample's main class.

  Args:
    logits: f32[B, C*k] labeler logits (class-major: index c*k + j).
    main_labels: int[B] main labels in [0, C).
    num_subclasses: k.

  Returns:
    f32[B, C*k]: softmax of ``logits[b, y*k:(y+1)*k]`` at those indices, exactly 0
    elsewhere; each row sums to 1.
  """
  _check_logits(logits, main_labels, num_subclasses)
  b, ck = logits.shape
  c = ck // num_subclasses
  grouped = logits.reshape(b, c, num_subclasses)
  own = jnp.take_along_axis(grouped, main_labels[:, None, None], axis=1)[:, 0]
  probs = jax.nn.softmax(own, axis=-1)                             # [B, k]
  onehot = jax.nn.one_hot(main_labels, c, dtype=probs.dtype)       # [B, C]
  return (onehot[:, :, None] * probs[:, None, :]).reshape(b, ck)


class Labeler(nn.Module):
  """Labeler network g_φ: image + main label → distribution over the C·k aux classes.

  Default backbone: for images f32[B, H, W, C_in], one 3×3 conv + ReLU + 2×2 max-pool
  per entry of ``features`` then a global average pool; for vectors f32[B, D], one
  Dense + ReLU per entry. A custom ``backbone`` (any module mapping x to f32[B, F],
  called as ``backbone(x)``) replaces it, e.g. AuxiLearn's Pet labeler, an ImageNet
  ResNet-18 with its 1000-way fc (`aux_jax.models.resnet.BatchStatsResNet18`; apply
  with ``mutable=["batch_stats"]``). One Dense + ReLU per entry of ``hidden`` (the Pet
  labeler: 512), then a Dense head gives C·k logits (in float32) and `masked_softmax`
  keeps y's k sub-classes.

  Attributes:
    num_classes: C, the number of main classes.
    num_subclasses: k, auxiliary sub-classes per main class.
    features: widths of the default backbone.
    backbone: optional feature extractor replacing the default.
    hidden: widths of Dense + ReLU layers between the backbone and the head.
    dtype: compute dtype of the default backbone.
  """

  num_classes: int
  num_subclasses: int
  features: Sequence[int] = (16, 32)
  backbone: Optional[nn.Module] = None
  hidden: Sequence[int] = ()
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, main_labels: jax.Array) -> jax.Array:
    """Args: x f32[B, H, W, C_in] or f32[B, D]; main_labels int[B].

    Returns: f32[B, C*k] soft auxiliary labels.
    """
    if self.backbone is not None:
      h = self.backbone(x)
    elif x.ndim == 4:
      h = x.astype(self.dtype)
      for width in self.features:
        h = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype)(h))
        h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="SAME")
      h = jnp.mean(h, axis=(1, 2))
    elif x.ndim == 2:
      h = x.astype(self.dtype)
      for width in self.features:
        h = nn.relu(nn.Dense(width, dtype=self.dtype)(h))
    else:
      raise ValueError(
          f"Labeler expects images f32[B, H, W, C] or vectors f32[B, D]; got {x.shape}")
    h = h.astype(jnp.float32)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width, dtype=jnp.float32)(h))
    logits = nn.Dense(self.num_classes * self.num_subclasses, dtype=jnp.float32)(h)
    return masked_softmax(logits, main_labels, self.num_subclasses)


def subclass_usage(soft: np.ndarray, labels: np.ndarray, num_classes: int,
                   num_subclasses: int) -> np.ndarray:
  """How often each sub-class is the labeler's arg-max, per main class.

  Args:
    soft: f32[N, C·k] generated labels.
    labels: int[N] main labels.
    num_classes: C.
    num_subclasses: k.

  Returns:
    f32[C, k]: row c is the distribution of arg-max sub-classes over the images of
    class c (zeros for a class without images). A collapsed labeler has one-hot rows.
  """
  sub = np.argmax(np.asarray(soft).reshape(len(labels), num_classes, num_subclasses)
                  [np.arange(len(labels)), labels], -1)
  counts = np.zeros((num_classes, num_subclasses))
  np.add.at(counts, (labels, sub), 1.0)
  return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
