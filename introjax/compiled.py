"""A member's compiled calls, with abstract arguments: what `introjax.aot`
compiles for a TPU topology the machine does not have.

Every trainer has `compiled_steps()`, the list of `Step`s its rounds,
generation and evaluation run: the jitted function the trainer itself
calls, and its arguments as `jax.ShapeDtypeStruct`s placed exactly as the
trainer places them (parameters and optimiser state from `jax.eval_shape`,
so no weights are made, and no data is read). A trainer built with
`abstract=True` holds its dataset (and pool, canvases, …) the same way.
"""
from typing import Any, Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np


class Step(NamedTuple):
  """One compiled call of a member.

  name         what it is ("classification", "synthesis", …)
  fn           the jitted function the trainer calls
  args         its arguments: abstract arrays (pytrees of them) or the
               static values it is called with
  kwargs       its keyword arguments (static ones: a variant's flag)
  iterations   loop iterations per call (optimiser or ascent steps; 1: no
               loop): XLA's cost analysis counts a loop's body once
  watch        name -> abstract array split over the mesh that must never
               be gathered (the pool, the dataset)
  resident     every abstract array the member keeps on the devices
               through a run (its state, all variants', and its data);
               those not among `args` count into the step's memory
  """
  name: str
  fn: Callable
  args: Tuple[Any, ...]
  kwargs: Dict[str, Any] = {}
  iterations: int = 1
  watch: Dict[str, Any] = {}
  resident: Any = ()


def placed(tree, sharding):
  """`tree`'s arrays (or their shapes) as ShapeDtypeStructs with
  `sharding` (one for every leaf, or a tree of them)."""
  if isinstance(sharding, jax.sharding.Sharding):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
        s.shape, s.dtype, sharding=sharding), tree)
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(
      s.shape, s.dtype, sharding=sh), tree, sharding)


def array(shape, dtype, sharding):
  return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype),
                              sharding=sharding)


def key(sharding):
  """A PRNG key (`jax.random.PRNGKey`'s uint32[2]) placed with `sharding`."""
  return array((2,), jnp.uint32, sharding)


def scalar(dtype, sharding):
  return array((), dtype, sharding)


def device_bytes(tree):
  """Bytes one device holds of `tree`'s abstract arrays (the largest
  shard, for a sharding that splits unevenly)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    if not isinstance(leaf, jax.ShapeDtypeStruct):
      continue
    shape = leaf.shape
    if leaf.sharding is not None:
      shape = leaf.sharding.shard_shape(leaf.shape)
    total += int(np.prod(shape, dtype=np.int64)) * leaf.dtype.itemsize
  return total
