"""Data parallelism: one mesh axis ``"data"`` over the devices of every host.

Every training step is one `jax.jit` program over a 1-D `Mesh` (GSPMD, no `pmap`):

* the resident datasets and the `TrainState` (θ, optimizer states, φ, BatchNorm
  statistics) are *replicated*, `NamedSharding(mesh, P())`;
* the batch gathered inside the step is *sharded* on its batch axis,
  ``P(None, "data")`` for per-task batches ``[T, B, ...]`` and ``P("data")`` for a
  shared batch ``[B, ...]``: each device computes the losses of ``B / n`` examples of
  every task.

The program's meaning is that of the 1-device program (sharding only changes where
it runs): means over the batch, BatchNorm statistics and gradients are over the
*global* batch, XLA inserting the all-reduces. So the results equal the 1-device
results up to float summation order, for every method, with no per-method code.

Multi-host: after `jax.distributed.initialize()`, `jax.devices()` lists the devices
of all processes and every process runs the same program on its own devices. Host
arrays become global arrays through `jax.make_array_from_callback` (every process
supplies the same array, e.g. the same dataset read from disk).

Configs choose the number of devices with ``config.mesh.num_devices`` (None: every
accelerator of every host; on a single-process CPU backend one device); the training
batch (per task for per-task batches) must divide over them. The dev batch is split
too when it divides, otherwise every device computes it whole.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any

DATA_AXIS = "data"


def data_parallel_size(num_devices: Optional[int], batch_size: int,
                       device_count: Optional[int] = None,
                       process_count: Optional[int] = None,
                       platform: Optional[str] = None) -> int:
  """The number of devices `n` of the data axis for a global batch of `batch_size`.

  Args:
    num_devices: ``config.mesh.num_devices``: how many devices, or None for every
      accelerator of every host. On a single-process CPU backend None means one
      device: several CPU "devices" (``--xla_force_host_platform_device_count``, the
      tests' fake devices) share the same cores, so they only add overhead.
    batch_size: the size of the sharded batch axis (per task for per-task batches).
    device_count: defaults to `jax.device_count()` (all hosts).
    process_count: defaults to `jax.process_count()`.
    platform: defaults to `jax.default_backend()`.

  Returns:
    `n` with ``1 <= n <= device_count`` and ``batch_size % n == 0``.

  Raises:
    ValueError: ``num_devices`` out of range, not all devices in a multi-process
      run, or `n` not dividing the batch.
  """
  count = jax.device_count() if device_count is None else device_count
  processes = jax.process_count() if process_count is None else process_count
  platform = jax.default_backend() if platform is None else platform
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if num_devices is None:
    n = 1 if platform == "cpu" and processes == 1 else count
  else:
    n = int(num_devices)
    if not 1 <= n <= count:
      raise ValueError(f"mesh.num_devices={n}, but there are {count} devices; "
                       f"use 1..{count} or None (all)")
    if processes > 1 and n != count:
      raise ValueError(f"mesh.num_devices={n}: a run over {processes} processes uses "
                       f"all {count} devices (set mesh.num_devices=None)")
  if batch_size % n:
    raise ValueError(f"data.batch_size={batch_size} is not divisible by the {n} devices "
                     f"of the data axis: every device needs an equal share of the "
                     f"batch; change the batch size or mesh.num_devices")
  return n


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` of `jax.devices()`.

  Args:
    num_devices: None for every device of every process; 1 for the single-device
      program (the default device).

  Raises:
    ValueError: out of range, or fewer than all devices in a multi-process run.
  """
  devices = jax.devices()
  n = len(devices) if num_devices is None else int(num_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices={n}, but there are {len(devices)} devices")
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"num_devices={n}: a multi-process mesh spans all "
                     f"{len(devices)} devices")
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:n])


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of arrays held whole by every device (state, resident data)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Arrays split over the data axis along dimension ``axis``: ``P(None·axis, "data")``."""
  return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def put_replicated(tree: PyTree, mesh: Optional[Mesh]) -> PyTree:
  """Host arrays (NumPy) as global arrays replicated on every device of ``mesh``.

  Every process must pass the same values (each supplies its own devices' copies,
  `jax.make_array_from_callback`); nothing is sent between hosts.

  Args:
    tree: a pytree of array-likes.
    mesh: the mesh; None gives `jnp.asarray` (default device).
  """
  if mesh is None:
    return jax.tree.map(jax.numpy.asarray, tree)
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return wait_on_cpu(jax.tree.map(put, tree), mesh)


def shard_batch(tree: PyTree, mesh: Optional[Mesh], axis: int = 0) -> PyTree:
  """Constrains every leaf to be split over the data axis along its dimension ``axis``.

  For use inside a jitted step on arrays gathered there (outside jit it moves them).
  An identity when ``mesh`` is None.

  Raises:
    ValueError: a leaf has no dimension ``axis``, or its size does not divide over
      the devices.
  """
  if mesh is None:
    return tree
  n = mesh.shape[DATA_AXIS]
  sharding = batch_sharding(mesh, axis)

  def constrain(x):
    if x.ndim <= axis or x.shape[axis] % n:
      raise ValueError(f"cannot split an array of shape {x.shape} over {n} devices "
                       f"along axis {axis}")
    return jax.lax.with_sharding_constraint(x, sharding)

  return jax.tree.map(constrain, tree)


def divides(mesh: Optional[Mesh], size: int) -> bool:
  """Whether a batch of ``size`` splits evenly over the data axis of ``mesh``."""
  return mesh is None or size % mesh.shape[DATA_AXIS] == 0


def wait_on_cpu(tree: PyTree, mesh: Optional[Mesh]) -> PyTree:
  """``tree``, first waiting for it to be computed if ``mesh`` spans several CPU devices.

  XLA's CPU backend runs the collectives of multi-device programs on a shared thread
  pool and can deadlock ("Termination timeout for `all gather ...`", an abort) when
  several such programs are in flight at once, as asynchronous dispatch allows. Waiting
  for a program's inputs before launching it keeps one in flight. Accelerators (and a
  single CPU device) return at once.
  """
  if mesh is not None and mesh.size > 1 and mesh.devices.flat[0].platform == "cpu":
    jax.block_until_ready([x for x in jax.tree.leaves(tree)  # not while tracing
                           if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)])
  return tree


def replicate(tree: PyTree, mesh: Optional[Mesh]) -> PyTree:
  """``tree`` with every array replicated on ``mesh``; leaves already so are kept.

  For a state edited outside the jitted steps (e.g. ``best_dev = jnp.float32(x)``, a
  single-device array) before a multi-host orbax checkpoint, which takes only global
  arrays. An identity when ``mesh`` is None.
  """
  if mesh is None:
    return tree
  target = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array) and (x.sharding == target or (
        x.sharding.is_fully_replicated and x.sharding.device_set == target.device_set)):
      return x
    return jax.device_put(x, target)

  return jax.tree.map(put, tree)
