"""The device mesh: one `data` axis over every device (of every host).

Batches, canvases and the negative pool are split along their leading axis;
parameters are replicated. The same code runs on one CPU, on simulated CPU
devices, on a GPU and on a TPU pod slice.
"""
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from introjax.errors import ConfigError

DATA = "data"


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_divisible(what, n, mesh: Mesh):
  if n % mesh.size:
    raise ConfigError(f"{what} is {n}, which does not split over the "
                     f"{mesh.size} devices of the mesh; use a multiple of "
                     f"{mesh.size}.")
