"""Compares ICL rounds on a 1-device mesh with an 8-device mesh; run with
XLA_FLAGS=--xla_force_host_platform_device_count=8. Each round starts both
meshes from the same state (chained rounds drift through float rounding in
sharded reductions, which SGD amplifies)."""
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import load_config  # pylint: disable=wrong-import-position
from introjax import parallel  # pylint: disable=wrong-import-position
from introjax.eval import robustness  # pylint: disable=wrong-import-position
from introjax.training import harness  # pylint: disable=wrong-import-position
from introjax.training.icl import IntrospectiveClassifier  # pylint: disable=wrong-import-position


def close(a, b, what, atol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      x, y, rtol=1e-3, atol=atol, err_msg=what), jax.device_get(a),
               jax.device_get(b))


def moved_to(model, state):
  targets = model.restore_targets({})
  placed = jax.tree.map(lambda x, t: jax.device_put(np.asarray(x), t.sharding),
                        model.checkpoint_items(jax.device_get(state)), targets)
  return model.from_items(placed)


def main():
  devices = jax.devices()
  print("devices:", len(devices))
  assert len(devices) == 8, "set XLA_FLAGS=--xla_force_host_platform_device_count=8"
  config = load_config("icl_digits.py:tiny")
  config.icl.variants = ("baseline", "icl")
  one = IntrospectiveClassifier(config, parallel.make_mesh(devices[:1]))
  eight = IntrospectiveClassifier(config, parallel.make_mesh(devices))
  state = one.init_state()
  for t in (1, 2):
    b_start = moved_to(eight, state)
    a, metrics_a = one.run_round(state, t)
    b, metrics_b = eight.run_round(b_start, t)
    assert len(b["icl"].pool.images.sharding.device_set) == 8
    for name in a:
      close(a[name].params, b[name].params, f"round {t} {name}", 2e-3)
    close(a["icl"].pool.images, b["icl"].pool.images, f"round {t} pool", 1e-2)
    np.testing.assert_allclose(metrics_a["icl/test_error"],
                               metrics_b["icl/test_error"], atol=0.011)
    state = a
  with tempfile.TemporaryDirectory() as workdir:
    config.rounds = 1
    harness.run_rounds(eight, config, workdir)
    config.rounds = 2
    resumed = harness.run_rounds(eight, config, workdir)
  assert len(resumed["icl"].pool.images.sharding.device_set) == 8
  print("1-device and 8-device ICL rounds match")
  check_evaluation_is_split(eight, moved_to(eight, state))


def check_evaluation_is_split(model, state):
  """Test error and the FGSM table with each batch split over the 8
  devices equal the same computed whole on every device."""
  assert model.config.eval.batch_size % 8 == 0
  split = model._eval_sharding()
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
  models = {name: (model.heads.class_logits, s.params)
            for name, s in state.items()}
  whole, parts = (robustness.robustness_table(
      models, model.test_images, model.test_labels,
      model.config.eval.fgsm_eps, model.config.eval.batch_size,
      sharding=sharding) for sharding in (None, split))
  assert whole == parts, (whole, parts)
  for name, s in state.items():
    assert model.test_error(s.params) == robustness.test_error(
        model.heads.class_logits, s.params, model.test_images,
        model.test_labels, model.config.eval.batch_size)
  print("evaluation split over the devices matches")


if __name__ == "__main__":
  main()
