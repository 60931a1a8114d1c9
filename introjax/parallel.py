"""The device mesh: one `data` axis over every device (of every host).

Batches, canvases, the training set and the negative pool are split along
their leading axis; parameters are replicated. The same code runs on one
CPU, on simulated CPU devices, on a GPU and on a multi-host TPU pod slice.

Multi-host (one process per host, all running the same program): every
process builds the same global arrays. Host data that is identical on every
process (parameters, the texture, the test set) is placed with `device_put`;
data each process holds only its rows of (the training set) goes through
`global_rows`. Reading a split array back to the host is a collective:
`to_host` runs on every process.
"""
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from introjax.errors import ConfigError

DATA = "data"


def make_mesh(devices=None) -> Mesh:
  """All devices, grouped by process, so each process's devices hold one
  contiguous block of rows of every split array."""
  if devices is None:
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def abstract_rows(num_rows, row_shape, dtype, mesh: Mesh):
  """The abstract array `global_rows` makes of `num_rows` rows of
  `row_shape` (padded, split over the data axis): a stand-in for the data
  when compiling without it (introjax.aot)."""
  return jax.ShapeDtypeStruct((padded_rows(num_rows, mesh), *row_shape),
                              dtype, sharding=batch_sharding(mesh))


def check_divisible(what, n, mesh: Mesh):
  if n % mesh.size:
    raise ConfigError(f"{what} is {n}, which does not split over the "
                     f"{mesh.size} devices of the mesh; use a multiple of "
                     f"{mesh.size}.")


def padded_rows(num_rows, mesh: Mesh):
  """`num_rows` rounded up to a multiple of the mesh size."""
  return -(-num_rows // mesh.size) * mesh.size


def process_rows(num_rows, mesh: Mesh):
  """The rows [start, stop) of a `num_rows`-row array split over the data
  axis (padded by `padded_rows`) that this process's devices hold."""
  total = padded_rows(num_rows, mesh)
  spans = sorted((index[0].start or 0, index[0].stop or total) for index in
                 batch_sharding(mesh).addressable_devices_indices_map(
                     (total,)).values())
  if any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
    raise ConfigError("This process's devices are not adjacent on the mesh; "
                      "build it with parallel.make_mesh().")
  return spans[0][0], spans[-1][1]


def global_rows(local, num_rows, mesh: Mesh):
  """One global array of `num_rows` rows (zero-padded to `padded_rows`),
  split over the data axis, from this process's rows `local` (the slice
  `process_rows` names, cut at `num_rows`)."""
  start, stop = process_rows(num_rows, mesh)
  local = np.asarray(local)
  want = min(stop, num_rows) - min(start, num_rows)
  if len(local) != want:
    raise ValueError(f"This process holds {len(local)} rows; rows "
                     f"[{start}, {stop}) of {num_rows} are {want}.")
  padding = np.zeros((stop - start - len(local),) + local.shape[1:],
                     local.dtype)
  return jax.make_array_from_process_local_data(
      batch_sharding(mesh), np.concatenate([local, padding]),
      (padded_rows(num_rows, mesh),) + local.shape[1:])


def map_batches(fn, array, batch_size, mesh: Mesh):
  """Host numpy results of `fn(batch)` over the host `array`'s rows, in
  batches of `batch_size` rounded up to a multiple of the devices, each
  split over them: a call's memory is one batch's, a device's a share of
  it. The last batch is zero-padded and its padding dropped, so `fn` must
  treat rows independently."""
  size = padded_rows(int(batch_size), mesh)
  sharding = batch_sharding(mesh)
  n = len(array)
  outs = []
  for start in range(0, n, size):
    batch = np.asarray(array[start:start + size])
    if len(batch) < size:
      batch = np.pad(batch, [(0, size - len(batch))] + [(0, 0)] *
                     (batch.ndim - 1))
    outs.append(to_host(fn(jax.device_put(batch, sharding))))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outs)


def to_host(tree):
  """Device arrays as numpy, whole on every process. Arrays split over
  several hosts are gathered (a collective: every process must call)."""
  def fetch(x):
    if (isinstance(x, jax.Array) and not x.is_fully_addressable
        and not x.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)
