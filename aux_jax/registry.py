"""Name registries whose entries are imported only when used.

A registry maps a name to ``"package.module:attribute"``; heavy dependencies (TFDS,
the AANG Transformer, ...) load only for the entry a config picks. Used by
`aux_jax.data.get_dataset`, `aux_jax.models.get_backbone` and the launcher's runners.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lookup(registry: Mapping[str, str], name: str, what: str) -> Any:
  """The attribute ``registry[name]`` names, imported.

  Raises:
    ValueError: for an unknown ``name`` ("unknown {what} ...; known: ...").
  """
  if name not in registry:
    raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
  module, attr = registry[name].split(":")
  return getattr(importlib.import_module(module), attr)
