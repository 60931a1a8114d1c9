"""Orbax checkpoints: one per completed round, holding everything needed to
resume exactly (every critic of the cascade, optimiser state, negative
pool, round, config).

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-write leaves the previous checkpoint as the
latest one; `latest_round` only ever sees complete checkpoints.
"""
import os

import jax
import orbax.checkpoint as ocp

from introjax.errors import ConfigMismatchError


class Checkpointer:
  """Rounds saved under `<workdir>/checkpoints/<round>`."""

  def __init__(self, workdir, max_to_keep=2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_round(self):
    return self._manager.latest_step()

  def save(self, round_index, state, meta):
    """Starts writing `state` (a pytree of arrays) and `meta` (JSON) in the
    background; the next save or `close` waits for it."""
    self._manager.save(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore_meta(self, round_index):
    return self._manager.restore(round_index, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def restore_state(self, round_index, like):
    """Restores into the structure, shapes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(round_index, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def check_compatible(saved, current, keys, directory):
  """Raises ConfigMismatchError naming the first of `keys` (dotted config
  paths) whose value differs between the `saved` and `current` configs."""
  def lookup(config, dotted):
    for part in dotted.split("."):
      config = config.get(part) if isinstance(config, dict) else None
    return config

  for key in keys:
    old, new = lookup(saved, key), lookup(current, key)
    if isinstance(old, list):
      old = tuple(old)
    if isinstance(new, list):
      new = tuple(new)
    if old != new:
      raise ConfigMismatchError(
          f"The checkpoint in {directory} was trained with {key}={old!r} but "
          f"the config now says {key}={new!r}; resume with the same setting "
          "or start a new --workdir.")
