"""One writer per workdir: a lock that a second launch on a busy workdir cannot take.

`hold(workdir)` takes an exclusive POSIX record lock (``fcntl.lockf``) on
``<workdir>/.lock`` and writes the holder (host, pid, start time) into it. The kernel
(or the NFS lock manager, on a shared filesystem) drops the lock when its process dies,
SIGKILL and a lost node (when its lease expires) included, so a stale ``.lock`` file
never blocks a rerun. In a multi-process run only process 0 takes it; the others learn
the outcome from it (`jax.experimental.multihost_utils.broadcast_one_to_all`), so every
process of a second job stops.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
  """The workdir is in use by another run (the message names its holder)."""


def _try_lock(path: str):
  """The open, locked lock file, or (None, holder text) if another process holds it."""
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    with open(path) as f:
      holder = f.read().strip()
    os.close(fd)
    return None, holder or "another process"
  os.ftruncate(fd, 0)
  now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}\n".encode())
  os.fsync(fd)
  return fd, None


@contextlib.contextmanager
def hold(workdir: str):
  """Holds ``workdir``'s lock for the duration of the ``with`` block.

  Raises:
    WorkdirBusy: another live process holds it (on every process of this run).
  """
  import jax

  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd, holder = _try_lock(path) if jax.process_index() == 0 else (None, None)
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils

    free = multihost_utils.broadcast_one_to_all(np.int32(fd is not None or
                                                         jax.process_index() != 0))
    if not int(free) and holder is None:
      holder = "another job (see its .lock file)"
  if holder is not None:
    raise WorkdirBusy(f"workdir {workdir} is in use by {holder} (one run per workdir; "
                      "wait for it to end, or use another --workdir)")
  try:
    yield
  finally:
    if fd is not None:
      os.close(fd)  # releases the lock
