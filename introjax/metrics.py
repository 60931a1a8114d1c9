"""Per-round metrics: TensorBoard event files plus a JSON-lines log.

Only process 0 writes, so a pod run logs once. Both go through
introjax.paths, so a gs:// workdir gets them too.
"""
import json
import os

import jax

from introjax import paths


class _EventObject:
  """A TensorBoard event file on object storage, for tensorboardX. An
  object cannot be appended to, so each flush uploads the whole file (as
  tensorboardX's own gs:// writer does, but through introjax.paths rather
  than a second storage client; scalars keep the file small)."""

  def __init__(self, path):
    self._path = path
    self._buffer = bytearray()

  def write(self, data):
    self._buffer += data

  def flush(self):
    paths.write_bytes(self._path, bytes(self._buffer))

  def close(self):
    self.flush()


class _EventObjectFactory:

  def open(self, path):
    return _EventObject(path)

  def directory_check(self, path):
    paths.makedirs(path)


def _summary_writer(logdir):
  from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  from tensorboardX import record_writer  # pylint: disable=import-outside-toplevel
  # Replaces tensorboardX's gs:// writer (google-cloud-storage called
  # directly) with one on the same layer as every other file.
  record_writer.register_writer_factory("gs", _EventObjectFactory())
  return SummaryWriter(logdir=logdir)


class MetricWriter:

  def __init__(self, workdir):
    self._active = jax.process_index() == 0
    self._tb = None
    self._jsonl = os.path.join(workdir, "metrics.jsonl")
    if self._active:
      self._tb = _summary_writer(workdir)

  def write(self, step, metrics):
    if not self._active:
      return
    scalars = {k: float(v) for k, v in metrics.items()}
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()
    paths.append_text(self._jsonl,
                      json.dumps({"round": step, **scalars}) + "\n")

  def close(self):
    if self._tb is not None:
      self._tb.close()
