"""ICL on 8 simulated devices against 1: rounds, a resumed run and the split
evaluation. The checks run in tests/multidevice_check.py's 8-device process
(or alone with XLA_FLAGS=--xla_force_host_platform_device_count=8).

The 8-device run goes on uninterrupted, and each of its rounds is repeated
on one device from the state it started from (chained rounds drift through
float rounding in sharded reductions, which SGD amplifies). A run stopped
after round 1 and resumed equals the uninterrupted one to float32 rounding.
"""
import json
import os
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import load_config  # pylint: disable=wrong-import-position
from introjax import parallel  # pylint: disable=wrong-import-position
from introjax.eval import robustness  # pylint: disable=wrong-import-position
from introjax.training import harness  # pylint: disable=wrong-import-position
from introjax.training.icl import IntrospectiveClassifier  # pylint: disable=wrong-import-position

# The 8-device state after check_rounds's two rounds (host arrays), which
# check_evaluation_is_split evaluates.
_TRAINED = {}


def close(a, b, what, atol, rtol=1e-3):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      x, y, rtol=rtol, atol=atol, err_msg=what), jax.device_get(a),
               jax.device_get(b))


def moved_to(model, state):
  targets = model.restore_targets({})
  placed = jax.tree.map(lambda x, t: jax.device_put(np.asarray(x), t.sharding),
                        model.checkpoint_items(jax.device_get(state)), targets)
  return model.from_items(placed)


def models(devices):
  config = load_config("icl_digits.py:tiny")
  config.icl.variants = ("baseline", "icl")
  return (config,
          IntrospectiveClassifier(config, parallel.make_mesh(devices[:1])),
          IntrospectiveClassifier(config, parallel.make_mesh(devices)))


def resumed_run(model, config, rounds):
  """`model` trained by the harness for one round, stopped and resumed to
  `rounds`: the final state and the metrics it logged, by round."""
  with tempfile.TemporaryDirectory() as workdir:
    config.rounds = 1
    harness.run_rounds(model, config, workdir)
    config.rounds = rounds
    state = harness.run_rounds(model, config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = {row["round"]: row for row in map(json.loads, f)}
  return state, logged


def check_rounds(devices):
  """Two ICL rounds on 8 devices match 1 device round by round; stopped
  after round 1 and resumed, the 8-device run gives the same weights, pool
  and metrics as without the stop."""
  config, one, eight = models(devices)
  state = eight.init_state()
  close(one.init_state(), state, "initial state", 0, rtol=0)
  metrics = {}
  for t in (1, 2):
    a_start = moved_to(one, state)
    b, metrics[t] = eight.run_round(state, t)
    a, metrics_a = one.run_round(a_start, t)
    assert len(b["icl"].pool.images.sharding.device_set) == 8
    for name in a:
      close(a[name].params, b[name].params, f"round {t} {name}", 2e-3)
    close(a["icl"].pool.images, b["icl"].pool.images, f"round {t} pool", 1e-2)
    np.testing.assert_allclose(metrics_a["icl/test_error"],
                               metrics[t]["icl/test_error"], atol=0.011)
    state = b
  final = jax.device_get(state)
  _TRAINED["state"] = final

  resumed, logged = resumed_run(eight, config, 2)
  assert len(resumed["icl"].pool.images.sharding.device_set) == 8
  close(eight.checkpoint_items(resumed), eight.checkpoint_items(final),
        "resumed run", 1e-6, rtol=1e-6)
  for t in (1, 2):
    assert set(logged[t]) == {"round", "round_seconds", *metrics[t]}, t
    for key, value in metrics[t].items():
      np.testing.assert_allclose(logged[t][key], np.asarray(value),
                                 rtol=1e-6, atol=1e-7,
                                 err_msg=f"resumed run round {t}: {key}")
  for name in a:
    close(a[name].params, resumed[name].params,
          f"resumed run against 1 device: {name}", 2e-3)
  print("1-device and 8-device ICL rounds match")


def check_evaluation_is_split(devices):
  """Test error and the FGSM table with each batch split over the 8
  devices equal the same computed whole on every device."""
  _, _, model = models(devices)
  if "state" not in _TRAINED:  # run alone: train the two rounds here
    state = model.init_state()
    for t in (1, 2):
      state, _ = model.run_round(state, t)
    _TRAINED["state"] = jax.device_get(state)
  state = moved_to(model, _TRAINED["state"])
  subject = model.evaluation_subject({})
  split = subject.sharding
  assert split is not None and len(split.device_set) == 8
  batch = model.config.eval.batch_size
  params = next(iter(state.values())).params
  predicted = robustness.predict(  # each device predicts its 1/8 only
      model.heads.class_logits, params, model.test_images[:batch], batch,
      split)
  one_batch = robustness._predict_batch(
      model.heads.class_logits, params,
      jax.device_put(model.test_images[:batch], split))
  assert one_batch.addressable_shards[0].data.shape == (batch // 8,)
  np.testing.assert_array_equal(predicted, np.asarray(one_batch))
  models_ = {name: (model.heads.class_logits, s.params)
             for name, s in state.items()}
  whole, parts = (robustness.robustness_table(
      models_, model.test_images, model.test_labels,
      model.config.eval.fgsm_eps, model.config.eval.batch_size,
      sharding=sharding) for sharding in (None, split))
  assert whole == parts, (whole, parts)
  final = model.evaluate(state)   # eval.final, split over the devices
  for name, s in state.items():
    assert final["test_error"][name] == robustness.test_error(
        model.heads.class_logits, s.params, model.test_images,
        model.test_labels, model.config.eval.batch_size)
  assert final["robustness"] == whole
  # A batch that does not divide the devices is rounded up to one that does
  # (zero rows, dropped), not computed whole on every device.
  odd = model.config.eval.batch_size + 3
  rounded = robustness.batch_size_on(model.mesh, odd)
  assert rounded % 8 == 0 and odd < rounded < odd + 8
  assert robustness.robustness_table(
      models_, model.test_images, model.test_labels,
      model.config.eval.fgsm_eps, rounded, sharding=split) == whole
  print("evaluation split over the devices matches")


CHECKS = {"icl_rounds": check_rounds,
          "icl_evaluation": check_evaluation_is_split}

if __name__ == "__main__":
  import multidevice_check  # pylint: disable=g-import-not-at-top
  sys.exit(multidevice_check.run(list(CHECKS)))
