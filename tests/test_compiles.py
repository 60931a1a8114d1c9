"""Shapes stay fixed from round to round, so nothing recompiles once every
kind of round has run (DESIGN §3): round 1 compiles the classification step,
round 2 (ICL) the synthesis, and round 3 must compile nothing.

The pools are made small enough that the runs go past their capacity: the
ring buffer overwrites its oldest negatives in the rounds checked, where a
write that wrapped differently would show as a new program.

XLA compilations are counted with the event JAX records around every backend
compile (jit functions and the eager ops outside them alike), attributed to
the round whose `run_round` began last, so a round's checkpoint save and
sample images count in that round.
"""
import collections

import jax
import numpy as np
import pytest

from conftest import load_config
from introjax import parallel
from introjax.training import harness
from introjax.training import icl
from introjax.training import igm
from introjax.training import winn

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _RoundMarks:
  """Wraps a trainer; remembers how many compilations preceded each round."""

  def __init__(self, trainer, compiled):
    self._trainer = trainer
    self._compiled = compiled
    self.starts = {}

  def __getattr__(self, name):
    return getattr(self._trainer, name)

  def run_round(self, state, round_index):
    self.starts[round_index] = len(self._compiled)
    return self._trainer.run_round(state, round_index)


def _compiles_per_round(build, spec, workdir, rounds=3, pool_rounds=None):
  """Runs `rounds` rounds of `build(config, mesh)` through the harness, its
  pool keeping `pool_rounds` rounds; returns
  ({round: Counter of compiled function names}, the final state)."""
  config = load_config(spec)
  config.rounds = rounds
  if pool_rounds is not None:
    config.pool.rounds = pool_rounds
  compiled = []

  def listener(event, duration, **kwargs):
    del duration
    if event == _COMPILE_EVENT:
      compiled.append(kwargs.get("fun_name", "?"))

  trainer = _RoundMarks(build(config, parallel.make_mesh()), compiled)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    state = harness.run_rounds(trainer, config, str(workdir))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  ends = {t: trainer.starts.get(t + 1, len(compiled))
          for t in trainer.starts}
  return {t: collections.Counter(compiled[trainer.starts[t]:ends[t]])
          for t in trainer.starts}, state


def _pool_rounds(pool):
  """The rounds whose negatives a pool holds."""
  return set(np.asarray(jax.device_get(pool.rounds)).tolist()) - {-1}


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory):
  """Synthesis from round 2 on, into a pool of one round: round 3's
  negatives overwrite round 2's."""
  return _compiles_per_round(icl.IntrospectiveClassifier, "icl_digits.py:tiny",
                             tmp_path_factory.mktemp("icl"),
                             pool_rounds=1)


@pytest.fixture(scope="module")
def icl_compiles(icl_run):
  return icl_run[0]


@pytest.fixture(scope="module")
def igm_run(tmp_path_factory):
  """p0's negatives and two rounds' fill the pool: rounds 2 and 3 overwrite
  p0's and round 1's."""
  return _compiles_per_round(igm.TextureIGM, "igm_texture.py:tiny",
                             tmp_path_factory.mktemp("igm"),
                             pool_rounds=2)


@pytest.fixture(scope="module")
def igm_compiles(igm_run):
  return igm_run[0]


@pytest.fixture(scope="module")
def winn_cascade_run(tmp_path_factory):
  """WINN with two critics of two rounds each (round 3 starts the second),
  its pool two rounds deep (rounds 2, 3 and 4 overwrite)."""
  def build(config, mesh):
    config.cascade.critics, config.rounds = 2, 4
    return winn.TextureWINN(config, mesh)
  return _compiles_per_round(build, "winn_texture.py:tiny",
                             tmp_path_factory.mktemp("winn"), rounds=4,
                             pool_rounds=2)


@pytest.fixture(scope="module")
def winn_cascade_compiles(winn_cascade_run):
  return winn_cascade_run[0]


def test_the_pools_went_past_their_capacity(icl_run, igm_run,
                                            winn_cascade_run):
  pools = {name: s.pool for name, s in icl_run[1].items()
           if _pool_rounds(s.pool)}
  assert pools  # the variants that synthesise
  for name, pool in pools.items():
    assert _pool_rounds(pool) == {3}, name
  assert _pool_rounds(igm_run[1].pool) == {2, 3}
  assert _pool_rounds(winn_cascade_run[1].pool) == {3, 4}


def test_icl_round_3_compiles_nothing(icl_compiles):
  assert icl_compiles[1]["jit(_train_fn)"] >= 1
  assert icl_compiles[2]["jit(_negatives_fn)"] >= 1  # synthesis starts
  assert not icl_compiles[3], icl_compiles[3]


def test_icl_round_2_does_not_recompile_the_classification_step(
    icl_compiles):
  assert not icl_compiles[2]["jit(_train_fn)"], icl_compiles[2]


def test_igm_compiles_nothing_after_round_1(igm_compiles):
  assert igm_compiles[1]["jit(_train_critic_fn)"] >= 1
  assert igm_compiles[1]["jit(_synthesize_fn)"] >= 1
  for t in (2, 3):
    assert not igm_compiles[t], (t, igm_compiles[t])


def test_igm_steps_compile_once(igm_compiles):
  """The compiled round itself (classification, synthesis, pool and cascade
  updates) compiles in round 1 only."""
  steps = ("jit(_train_critic_fn)", "jit(_synthesize_fn)", "jit(pool_add)",
           "jit(put)")
  for t in (2, 3):
    assert not any(igm_compiles[t][s] for s in steps), igm_compiles[t]


def test_winn_cascade_compiles_nothing_after_round_1(winn_cascade_compiles):
  assert winn_cascade_compiles[1]["jit(_train_critic_fn)"] >= 1
  for t in (2, 3, 4):
    assert not winn_cascade_compiles[t], (t, winn_cascade_compiles[t])
