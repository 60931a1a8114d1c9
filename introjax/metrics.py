"""Per-round metrics: TensorBoard event files plus a JSON-lines log.

Only process 0 writes, so a pod run logs once.
"""
import json
import os

import jax


class MetricWriter:

  def __init__(self, workdir):
    self._active = jax.process_index() == 0
    self._tb = None
    self._jsonl = os.path.join(workdir, "metrics.jsonl")
    if self._active:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(logdir=workdir)

  def write(self, step, metrics):
    if not self._active:
      return
    scalars = {k: float(v) for k, v in metrics.items()}
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._tb.flush()
    with open(self._jsonl, "a") as f:
      f.write(json.dumps({"round": step, **scalars}) + "\n")

  def close(self):
    if self._tb is not None:
      self._tb.close()
