"""The shared round loop's own options: the profiler trace of one round."""
import copy
import json

import pytest

from conftest import load_config
from introjax import parallel
from introjax.training import harness
from introjax.training import icl


@pytest.fixture(scope="module")
def tiny_icl():
  """A 2-round tiny ICL config tracing round 2, and one trainer for it that
  every test here runs (its programs compile once)."""
  config = load_config("icl_digits.py:tiny")
  config.rounds = 2
  config.profile_round = 2
  config.icl.variants = ("baseline", "icl")
  return config, icl.IntrospectiveClassifier(config, parallel.make_mesh())


def test_profile_round_writes_one_trace_and_the_usual_metrics(tmp_path,
                                                              tiny_icl):
  config, trainer = tiny_icl
  harness.run_rounds(trainer, config, str(tmp_path))
  # jax.profiler.trace writes plugins/profile/<time>/<host>.xplane.pb.
  runs = list((tmp_path / "profile" / "plugins" / "profile").iterdir())
  assert len(runs) == 1, runs
  traces = list(runs[0].glob("*.xplane.pb"))
  assert traces and traces[0].stat().st_size > 0
  rows = [json.loads(line) for line in
          (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rows] == [1, 2]
  assert "icl/synthesis_steps_mean" in rows[1]
  assert (tmp_path / "samples" / "icl_round_002.png").exists()


def test_profile_round_zero_and_configs_without_it_write_no_trace(tmp_path,
                                                                  tiny_icl):
  config, trainer = tiny_icl
  config = copy.deepcopy(config)
  config.rounds, config.profile_round = 1, 0
  harness.run_rounds(trainer, config, str(tmp_path / "off"))
  del config["profile_round"]  # configs that predate the field still run
  harness.run_rounds(trainer, config, str(tmp_path / "absent"))
  for name in ("off", "absent"):
    assert not (tmp_path / name / "profile").exists()
    assert (tmp_path / name / "metrics.jsonl").exists()


def test_profile_steps_is_the_command_line_spelling_of_profile_round():
  from introjax import config_utils
  argv = ["main.py", "--config=configs/icl_digits.py",
          "--config.profile_steps=3", "--config.rounds=4"]
  resolved = config_utils.resolve_aliases(argv)
  assert resolved == ["main.py", "--config=configs/icl_digits.py",
                      "--config.profile_round=3", "--config.rounds=4"]
  config_utils.check_overrides(resolved[1:])  # a known key after resolving
