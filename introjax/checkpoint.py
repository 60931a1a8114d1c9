"""Orbax checkpoints: one per completed round, holding everything needed to
resume exactly (every critic of the cascade, optimiser state, negative
pool, round, config).

Orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-write leaves the previous checkpoint as the
latest one; `latest_round` only ever sees complete checkpoints.
"""
import os

import orbax.checkpoint as ocp

from introjax import config_utils
from introjax import paths
from introjax.errors import ConfigMismatchError


class Checkpointer:
  """Rounds saved under `<workdir>/checkpoints/<round>`."""

  def __init__(self, workdir, max_to_keep=2):
    self.directory = os.path.join(paths.absolute(workdir), "checkpoints")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_round(self):
    return self._manager.latest_step()

  def all_rounds(self):
    return list(self._manager.all_steps())

  def save(self, round_index, items, meta):
    """Starts writing `items` (name -> pytree of arrays) and `meta` (JSON)
    in the background; the next save or `close` waits for it."""
    args = {k: ocp.args.StandardSave(v) for k, v in items.items()}
    self._manager.save(round_index, args=ocp.args.Composite(
        meta=ocp.args.JsonSave(meta), **args))

  def restore_meta(self, round_index):
    """The round's meta, its config in today's layout (a checkpoint from
    before the config sections were renamed reads as if saved today)."""
    meta = self._manager.restore(round_index, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]
    if "config" in meta:
      meta["config"] = config_utils.upgrade(meta["config"])
    return meta

  def restore(self, round_index, targets):
    """Restores the items named in `targets` (name -> pytree of
    jax.ShapeDtypeStruct with shardings), and only those."""
    args = {k: ocp.args.StandardRestore(v) for k, v in targets.items()}
    restored = self._manager.restore(round_index,
                                     args=ocp.args.Composite(**args))
    return {k: restored[k] for k in targets}

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


# Data settings that say how many images are read, from where, and how they
# are augmented, not what a saved array means: a run may resume with others.
RESUMABLE_DATA = ("max_images", "max_train", "max_test", "data_dir",
                  "npz_path", "flip", "augment", "seed", "split",
                  "train_split", "test_split")


def structural_keys(config, state_keys=()):
  """The config fields a checkpoint's arrays depend on: the trainer, every
  field of `model` and of `data` (but RESUMABLE_DATA), and the member's own
  `state_keys` (what sizes its pool, negatives and optimiser state).
  Resuming with another value of any of them is refused."""
  keys = ["trainer"]
  for section in ("model", "data"):
    for key in config_utils.config_keys(config.get(section, {}), ""):
      if not (section == "data" and key in RESUMABLE_DATA):
        keys.append(f"{section}.{key}")
  return tuple(keys) + tuple(state_keys)


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
