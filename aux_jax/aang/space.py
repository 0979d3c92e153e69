"""AANG's factored search space of auxiliary objectives, as data.

AANG (Dery et al., "AANG: Automating Auxiliary Learning", ICLR 2023) writes every
auxiliary objective as a tuple ``(I, T, R, O)``:

* ``I`` input data: ``task`` (the end task's own texts) or ``in_domain`` (unlabelled text
  of the same domain);
* ``T`` transform of the input: ``none``, ``replace`` (15% of tokens replaced by random
  tokens), ``mask`` (15% replaced by MASK), ``bert`` (15% selected; 80% MASK, 10% random,
  10% kept);
* ``R`` representation, i.e. the attention mask: ``bidirectional``, ``left_to_right``,
  ``right_to_left``, ``random_factorized`` (a random Bernoulli mask, see `attention`);
* ``O`` output: ``denoise`` (a language-model head predicts original tokens) or
  ``supervised`` (the end task's classifier head on the transformed input).

The space is the Cartesian product of the axes minus *illegal* combinations. A rule is a
partial assignment (e.g. ``{"representation": "left_to_right", "output": "supervised"}``);
an objective is illegal when it matches every entry of some rule.

Default rules (the original's, for a space with a supervised output):

1. ``supervised`` output needs the task's own input: only ``task`` texts have labels.
2. ``supervised`` output is illegal with ``left_to_right`` / ``right_to_left``: the
   classifier reads the CLS state at position 0, which under L2R sees only itself; the
   original forbids both one-directional masks with a sentence-level head, and we keep
   its rule so that the space matches its count.

How the ``citation.supervised`` space has 24 objectives::

    I = {task}                                            1
    T = {none, replace, mask, bert}                       4
    R = {bidirectional, left_to_right, right_to_left,
         random_factorized}                               4
    O = {supervised, denoise}                             2   -> 1*4*4*2 = 32
    illegal by rule 2: supervised x {L2R, R2L} x any T    8   -> 32 - 8 = 24
      (rule 1 removes nothing: the only input is the task's)

So: 16 denoise objectives (every T x R) and 8 supervised ones (every T x {bidirectional,
random_factorized}). A supervised output on a corrupted input is *legal* (it is the
task loss under input noise, as in the original); forbidding it would leave 18, not 24.

``(task, none, R, denoise)`` with R in {bidirectional, left_to_right, right_to_left}
reconstructs an uncorrupted input while seeing each target at its own position: copy
objectives, which the original keeps in its 24. `attention` hides the diagonal in
exactly these cases (``copy_fix``, default on), so they stay legal and are real
denoising objectives; ``drop_identity_denoise=True`` removes the bidirectional one (23).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, NamedTuple, Sequence

import numpy as np

AXES = ("input", "transform", "representation", "output")

INPUTS = ("task", "in_domain")
TRANSFORMS = ("none", "replace", "mask", "bert")
REPRESENTATIONS = ("bidirectional", "left_to_right", "right_to_left", "random_factorized")
OUTPUTS = ("denoise", "supervised")

_ALLOWED = {
    "input": INPUTS,
    "transform": TRANSFORMS,
    "representation": REPRESENTATIONS,
    "output": OUTPUTS,
}

Rule = Mapping[str, str]

# The primary task, written as an objective of the space (it may or may not be in it).
PRIMARY = ("task", "none", "bidirectional", "supervised")


class ObjectiveTable(NamedTuple):
  """The valid objectives as integer arrays, one row per objective (C rows).

  Attributes:
    factors: i32[C, 4], each objective's index along each axis *of this space*
      (indexes the factored logits W_I, W_T, W_R, W_O).
    input_index: i32[C], index into the space's ``inputs`` (which stacked input to read).
    transform: i32[C], global code, an index into `TRANSFORMS`.
    representation: i32[C], global code, an index into `REPRESENTATIONS`.
    output: i32[C], global code, an index into `OUTPUTS`.
  """

  factors: np.ndarray
  input_index: np.ndarray
  transform: np.ndarray
  representation: np.ndarray
  output: np.ndarray


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A factored space: four axes of allowed values plus illegal-combination rules.

  Attributes:
    inputs, transforms, representations, outputs: the values along each axis, in order
      (names from `INPUTS`, `TRANSFORMS`, `REPRESENTATIONS`, `OUTPUTS`).
    illegal: rules; an objective matching every key/value of a rule is illegal.
  """

  inputs: tuple[str, ...]
  transforms: tuple[str, ...]
  representations: tuple[str, ...]
  outputs: tuple[str, ...]
  illegal: tuple[tuple[tuple[str, str], ...], ...] = ()

  def __post_init__(self):
    for axis, values in zip(AXES, self.axes):
      if not values:
        raise ValueError(f"SearchSpace axis {axis!r} is empty.")
      if len(set(values)) != len(values):
        raise ValueError(f"SearchSpace axis {axis!r} has repeated values: {values}.")
      bad = [v for v in values if v not in _ALLOWED[axis]]
      if bad:
        raise ValueError(
            f"Unknown {axis} value(s) {bad}; allowed: {_ALLOWED[axis]}.")
    for rule in self.illegal:
      for axis, value in rule:
        if axis not in _ALLOWED:
          raise ValueError(f"Illegal-rule axis {axis!r} is not one of {AXES}.")
        if value not in _ALLOWED[axis]:
          raise ValueError(
              f"Illegal-rule value {value!r} for axis {axis!r}; allowed: {_ALLOWED[axis]}.")

  @property
  def axes(self) -> tuple[tuple[str, ...], ...]:
    """The four axes, in `AXES` order."""
    return (self.inputs, self.transforms, self.representations, self.outputs)

  @property
  def shape(self) -> tuple[int, int, int, int]:
    """Number of values along each axis."""
    return tuple(len(a) for a in self.axes)

  def is_valid(self, objective: Sequence[str]) -> bool:
    """Whether ``(I, T, R, O)`` names lie in the axes and match no illegal rule."""
    if len(objective) != 4:
      raise ValueError(f"An objective is a 4-tuple (I, T, R, O), got {objective!r}.")
    if any(v not in a for v, a in zip(objective, self.axes)):
      return False
    named = dict(zip(AXES, objective))
    return not any(all(named[k] == v for k, v in rule) for rule in self.illegal)

  def valid_mask(self) -> np.ndarray:
    """bool[|I|, |T|, |R|, |O|]: True where the combination is legal."""
    mask = np.zeros(self.shape, dtype=bool)
    for idx in itertools.product(*(range(n) for n in self.shape)):
      mask[idx] = self.is_valid(tuple(a[i] for a, i in zip(self.axes, idx)))
    return mask

  def objectives(self) -> list[tuple[str, str, str, str]]:
    """The valid objectives as name tuples, in row-major (I, T, R, O) order."""
    return [o for o in itertools.product(*self.axes) if self.is_valid(o)]

  def __len__(self) -> int:
    return len(self.objectives())

  def names(self) -> list[str]:
    """Readable names ``"I|T|R|O"`` of the valid objectives."""
    return ["|".join(o) for o in self.objectives()]

  def table(self) -> ObjectiveTable:
    """The valid objectives as an `ObjectiveTable` of integer arrays."""
    objs = self.objectives()
    if not objs:
      raise ValueError("The search space has no valid objective.")
    factors = np.array(
        [[a.index(v) for a, v in zip(self.axes, o)] for o in objs], dtype=np.int32)
    return ObjectiveTable(
        factors=factors,
        input_index=factors[:, 0].copy(),
        transform=np.array([TRANSFORMS.index(o[1]) for o in objs], dtype=np.int32),
        representation=np.array(
            [REPRESENTATIONS.index(o[2]) for o in objs], dtype=np.int32),
        output=np.array([OUTPUTS.index(o[3]) for o in objs], dtype=np.int32),
    )


def default_rules(inputs: Sequence[str], outputs: Sequence[str]) -> tuple[dict, ...]:
  """The original's validity rules (see the module docstring) for the given axes."""
  if "supervised" not in outputs:
    return ()
  rules = [{"input": i, "output": "supervised"} for i in inputs if i != "task"]
  rules += [{"representation": r, "output": "supervised"}
            for r in ("left_to_right", "right_to_left")]
  return tuple(rules)


def make_space(
    inputs: Sequence[str],
    transforms: Sequence[str],
    representations: Sequence[str],
    outputs: Sequence[str],
    extra_rules: Sequence[Rule] = (),
    drop_identity_denoise: bool = False,
) -> SearchSpace:
  """Builds a space with the default rules plus ``extra_rules``.

  Args:
    inputs, transforms, representations, outputs: axis values.
    extra_rules: further illegal partial assignments, e.g.
      ``[{"transform": "none", "representation": "bidirectional"}]``.
    drop_identity_denoise: also forbid ``(·, none, bidirectional, denoise)``.

  Returns:
    The `SearchSpace`.
  """
  rules = list(default_rules(inputs, outputs)) + [dict(r) for r in extra_rules]
  if drop_identity_denoise:
    rules.append({"transform": "none", "representation": "bidirectional",
                  "output": "denoise"})
  return SearchSpace(
      inputs=tuple(inputs), transforms=tuple(transforms),
      representations=tuple(representations), outputs=tuple(outputs),
      illegal=tuple(tuple(sorted(r.items())) for r in rules))


def get_space(name: str, drop_identity_denoise: bool = False) -> SearchSpace:
  """Named spaces.

  * ``citation.supervised`` (24 objectives): task input, all T, R, both outputs.
  * ``citation.all`` (40): as above with ``in_domain`` input too (denoise only there).
  * ``tapt`` (1): ``(task, bert, bidirectional, denoise)``, task-adaptive pre-training.
  * ``gpt`` (1): ``(task, none, left_to_right, denoise)``.
  * ``xlnet`` (1): ``(task, none, random_factorized, denoise)``.

  Args:
    name: one of the names above.
    drop_identity_denoise: see `make_space`.

  Returns:
    The `SearchSpace`.
  """
  if name == "citation.supervised":
    return make_space(("task",), TRANSFORMS, REPRESENTATIONS, ("supervised", "denoise"),
                      drop_identity_denoise=drop_identity_denoise)
  if name == "citation.all":
    return make_space(("task", "in_domain"), TRANSFORMS, REPRESENTATIONS,
                      ("supervised", "denoise"),
                      drop_identity_denoise=drop_identity_denoise)
  single = {
      "tapt": ("bert", "bidirectional"),
      "gpt": ("none", "left_to_right"),
      "xlnet": ("none", "random_factorized"),
  }
  if name in single:
    t, r = single[name]
    return make_space(("task",), (t,), (r,), ("denoise",))
  raise ValueError(
      f"Unknown search space {name!r}; known: citation.supervised, citation.all, "
      f"{', '.join(single)}.")
