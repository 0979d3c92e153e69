"""What produced a result: versions, commit, devices and command line of a run.

`run_provenance()` is recorded under ``"provenance"`` in a run's ``config.json``,
``test_metrics.json`` and (two-phase runs) ``summary.json``, and in the compare
launcher's ``compare.json``.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Optional

# Distributions whose versions are recorded (aux_jax's own is "aux_jax_version").
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")


def _version(dist: str) -> Optional[str]:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


@functools.lru_cache(maxsize=None)
def git_state(path: Optional[str] = None) -> dict:
  """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the checkout that
  holds ``path`` (default: this package); None for both outside a git checkout."""
  path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    run = lambda *a: subprocess.run(["git", "-C", path, *a], capture_output=True,
                                    text=True, timeout=10)
    head = run("rev-parse", "HEAD")
    if head.returncode != 0:
      return {"git_commit": None, "git_dirty": None}
    status = run("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"git_commit": head.stdout.strip(), "git_dirty": dirty}
  except (OSError, subprocess.SubprocessError):
    return {"git_commit": None, "git_dirty": None}


def run_provenance() -> dict:
  """The versions, commit, devices and command of this process.

  Returns:
    ``aux_jax_version``, ``git_commit`` / ``git_dirty`` (None outside a checkout),
    ``versions`` ({distribution: version or None} of `PACKAGES`), ``device_kind``,
    ``device_count``, ``process_count``, ``backend``, ``command`` (argv),
    ``python``, ``platform``, ``date`` (UTC, ISO 8601).
  """
  import jax

  devices = jax.devices()
  return {
      "aux_jax_version": _version("aux_jax"),
      **git_state(),
      "versions": {p: _version(p) for p in PACKAGES},
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "process_count": jax.process_count(),
      "command": list(sys.argv),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
