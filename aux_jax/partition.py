"""Module partitions of a parameter pytree, as data.

A partition assigns every leaf of the *shared* (backbone) parameters to one of `M`
modules; module-wise methods such as MAOAL (Chen et al., "Module-Aware Optimization
for Auxiliary Learning", NeurIPS 2022) keep one weight per (auxiliary task, module).
Kinds:

* `global`: one module holding every leaf (`M = 1`).
* `module_wise`: rules `(module_name, regex)` on leaf paths, tried in order, the first
  `re.search` match wins (e.g. the CIFAR ResNet-18's stem and four stages, `M = 5`).
* `param_wise`: every leaf its own module, named by its path.

A leaf's path is `'/'.join` of its keys, e.g. `'stage1/block0/conv1/conv/kernel'`.
Pass the backbone's `params` collection itself, not `{'params': ...}`.

`module_broadcast` and `module_inner` move between per-module scalars and pytrees;
both are jittable (the partition is static).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any

KINDS = ("global", "module_wise", "param_wise")

RESNET18_CIFAR_MODULES = (
    ("stem", r"^stem/"),
    ("stage1", r"^stage1/"),
    ("stage2", r"^stage2/"),
    ("stage3", r"^stage3/"),
    ("stage4", r"^stage4/"),
)

SMALL_CNN_MODULES = (
    ("block1", r"^block1/"),
    ("block2", r"^block2/"),
    ("dense", r"^dense/"),
)

# One module per hidden layer of the default `MLP(hidden=(64, 64, 64))`; another
# depth needs its own rules (or the global / param_wise partition).
MLP_MODULES = (
    ("layer0", r"^layer0/"),
    ("layer1", r"^layer1/"),
    ("layer2", r"^layer2/"),
)

MULTI_LENET_MODULES = (
    ("conv1", r"^conv1/"),
    ("conv2", r"^conv2/"),
    ("dense", r"^dense/"),
)

# SegNetBody (any number of levels): the encoder and the decoder.
SEGNET_MODULES = (("encoder", r"^enc\d+_"), ("decoder", r"^dec\d+_"))

_RULES = {
    "segnet": SEGNET_MODULES,
    "resnet18_cifar": RESNET18_CIFAR_MODULES,
    "resnet18": RESNET18_CIFAR_MODULES,
    "small_cnn": SMALL_CNN_MODULES,
    "mlp": MLP_MODULES,
    "multi_lenet": MULTI_LENET_MODULES,
}


def partition_rules(name: str) -> tuple[tuple[str, str], ...]:
  """The module rules of a model from `aux_jax.models.get_backbone` by name.

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  if name not in _RULES:
    raise ValueError(f"no module rules for {name!r}; known: {', '.join(sorted(_RULES))}")
  return _RULES[name]


def _key_str(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_paths(tree: PyTree) -> list[str]:
  """`'/'.join` key paths of the leaves of `tree`, in `jax.tree.leaves` order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return ["/".join(_key_str(k) for k in path) for path, _ in flat]


# eq/hash by value (the assignment is a dict), so a Partition can be a static argument.
@dataclasses.dataclass(frozen=True, eq=False)
class Partition:
  """Which module each parameter leaf belongs to.

  Attributes:
    module_names: `M` names.
    assignment: a pytree with the params' structure; leaves are Python ints, the
      module index of the leaf.
    leaf_shapes: shapes of the params' leaves in `jax.tree.leaves` order (filled by
      `make_partition`; `module_broadcast` with leading axes needs them).
  """

  module_names: tuple[str, ...]
  assignment: PyTree
  leaf_shapes: tuple[tuple[int, ...], ...] = ()

  @property
  def num_modules(self) -> int:
    return len(self.module_names)

  @property
  def leaf_modules(self) -> tuple[int, ...]:
    """Module index of each leaf, in `jax.tree.leaves` order."""
    return tuple(jax.tree.leaves(self.assignment))

  @property
  def module_sizes(self) -> tuple[int, ...]:
    """Number of scalar parameters in each module (needs `leaf_shapes`)."""
    sizes = [0] * self.num_modules
    for m, shape in zip(self.leaf_modules, self.leaf_shapes):
      n = 1
      for d in shape:
        n *= d
      sizes[m] += n
    return tuple(sizes)

  def shapes_for(self, user: str) -> tuple[tuple[int, ...], ...]:
    """`leaf_shapes`, or a ValueError naming ``user`` when the partition lacks them."""
    if len(self.leaf_shapes) != len(jax.tree.leaves(self.assignment)):
      raise ValueError(f"{user} needs the partition's leaf_shapes; build it with "
                       "aux_jax.partition.make_partition")
    return self.leaf_shapes

  def _key(self):
    leaves, treedef = jax.tree.flatten(self.assignment)
    return (self.module_names, treedef, tuple(leaves), self.leaf_shapes)

  def __eq__(self, other):
    return isinstance(other, Partition) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())


def make_partition(params: PyTree, kind: str,
                   rules: Sequence[tuple[str, str]] = ()) -> Partition:
  """Partitions the leaves of `params` into modules.

  Args:
    params: the shared parameters (any pytree; only structure and shapes are used).
    kind: 'global', 'module_wise' or 'param_wise'.
    rules: for 'module_wise', `(module_name, regex)` pairs tried in order on each
      leaf path, first `re.search` match wins. Several rules may share a name (one
      module). Ignored by the other kinds.

  Returns:
    A `Partition`.

  Raises:
    ValueError: unknown kind; 'module_wise' without rules, or a rule that matches no
      parameter (or only parameters taken by earlier rules), or a parameter that
      matches no rule -- each named in the message.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown partition kind {kind!r}; expected one of {KINDS}")
  leaves, treedef = jax.tree.flatten(params)
  if not leaves:
    raise ValueError("params has no leaves to partition")
  paths = leaf_paths(params)
  shapes = tuple(tuple(jnp.shape(x)) for x in leaves)

  if kind == "global":
    names, ids = ("global",), [0] * len(leaves)
  elif kind == "param_wise":
    names, ids = tuple(paths), list(range(len(leaves)))
  else:
    names, ids = _apply_rules(paths, rules)
  return Partition(names, jax.tree.unflatten(treedef, ids), shapes)


def _apply_rules(paths, rules):
  if not rules:
    raise ValueError("kind='module_wise' needs rules: (module_name, regex) pairs, "
                     "e.g. partition_rules('resnet18_cifar')")
  names = tuple(dict.fromkeys(name for name, _ in rules))
  compiled = []
  for name, pattern in rules:
    try:
      compiled.append((name, re.compile(pattern)))
    except re.error as e:
      raise ValueError(f"module {name!r}: invalid regex {pattern!r}: {e}") from e
  ids, used = [], [0] * len(rules)
  unmatched = []
  for path in paths:
    for r, (name, rx) in enumerate(compiled):
      if rx.search(path):
        ids.append(names.index(name))
        used[r] += 1
        break
    else:
      unmatched.append(path)
  if unmatched:
    raise ValueError(
        f"{len(unmatched)} parameter(s) match no module rule, e.g. {unmatched[:5]}; "
        f"rules: {list(rules)}"
    )
  empty = [rules[r] for r in range(len(rules)) if used[r] == 0]
  if empty:
    raise ValueError(
        f"module rule(s) {empty} match no parameter (or only parameters taken by "
        f"earlier rules); parameter paths look like {paths[:3]}"
    )
  return names, ids


def module_broadcast(partition: Partition, per_module: jnp.ndarray) -> PyTree:
  """Spreads per-module values over the parameter pytree.

  Leaf `l` of module `m(l)` gets `per_module[..., m(l)]`, reshaped to
  `batch_shape + (1,) * leaf.ndim` so it broadcasts against the leaf, or against a
  batched leaf `[*batch_shape, *leaf.shape]`.

  Args:
    partition: the partition.
    per_module: `f32[M]` or `f32[..., M]` (e.g. `f32[T, M]`, one row per task).

  Returns:
    A pytree like the params: leaves `f32[]` for `f32[M]` input, `f32[T, 1, …, 1]`
    for `f32[T, M]`.
  """
  per_module = jnp.asarray(per_module)
  if per_module.ndim == 0 or per_module.shape[-1] != partition.num_modules:
    raise ValueError(f"per_module must be [..., {partition.num_modules}], got "
                     f"shape {per_module.shape}")
  batch = per_module.shape[:-1]
  leaves, treedef = jax.tree.flatten(partition.assignment)
  if batch:
    partition.shapes_for("module_broadcast with leading axes")
  out = []
  for i, m in enumerate(leaves):
    v = per_module[..., m]
    if batch:
      v = v.reshape(batch + (1,) * len(partition.leaf_shapes[i]))
    out.append(v)
  return jax.tree.unflatten(treedef, out)


def module_inner(partition: Partition, a: PyTree, b: PyTree,
                 batched: bool = False) -> jnp.ndarray:
  """Per-module inner products: `out[m] = Σ_{l ∈ m} Σ a_l ⊙ b_l`.

  Sums are exact per-leaf reductions added per module (no matmul, so no reduced
  precision on accelerators). With `a = b` it gives squared module norms.

  Args:
    partition: the partition.
    a: pytree like the params; with `batched`, leaves `[T, *leaf.shape]`.
    b: pytree like the params; with `batched`, leaves `leaf.shape` (broadcast over
      `T`) or `[T, *leaf.shape]`.
    batched: the first axis of the products is a batch axis (e.g. tasks) kept in
      the output. Without it everything is reduced, so under `jax.vmap` the
      unbatched form works per example too.

  Returns:
    `f32[M]`, or `f32[T, M]` when `batched`.
  """
  ids = partition.leaf_modules
  a_leaves = jax.tree.leaves(a)
  b_leaves = jax.tree.leaves(b)
  if not len(a_leaves) == len(b_leaves) == len(ids):
    raise ValueError(f"a, b and the partition have {len(a_leaves)}, {len(b_leaves)} "
                     f"and {len(ids)} leaves")
  sums = []
  for x, y in zip(a_leaves, b_leaves):
    p = x * y
    sums.append(jnp.sum(p, axis=tuple(range(1, p.ndim))) if batched else jnp.sum(p))
  per_module = []
  for m in range(partition.num_modules):
    terms = [s for s, i in zip(sums, ids) if i == m]
    per_module.append(sum(terms[1:], terms[0]) if terms else jnp.zeros_like(sums[0]))
  return jnp.stack(per_module, axis=-1)
