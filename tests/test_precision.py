"""bfloat16 compute (`config.dtype="bfloat16"`): parameters, optimiser state,
pool and images stay float32, logits and gradients come back float32, and
logits agree with float32 compute to bfloat16's resolution."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from introjax.errors import ConfigError
from introjax.models import classifiers
from introjax.models import critics
from introjax.models.layers import Conv
from introjax.objectives import losses
from introjax.sampling.scores import logit_ascent
from introjax.training.igm import train_and_evaluate

_SHAPE = (16, 16, 3)


def _networks():
  """(name, network builder by dtype) for each network family."""
  dcgan = ml_collections.ConfigDict(dict(name="dcgan", features=(8, 16),
                                         kernel_size=5, norm="layer"))
  winn = ml_collections.ConfigDict(dict(name="winn", features=(8, 16)))
  icl = ml_collections.ConfigDict(dict(name="icl_conv", features=(8, 16),
                                       kernel_size=5))
  resnet = ml_collections.ConfigDict(dict(name="resnet_critic", features=8,
                                          norm="layer"))
  return [
      ("dcgan", lambda dtype: critics.build_critic(dcgan, dtype)),
      ("resnet_critic", lambda dtype: critics.build_critic(resnet, dtype)),
      ("winn", lambda dtype: critics.build_critic(winn, dtype)),
      ("icl_conv", lambda dtype: classifiers.build_classifier(icl, 3, dtype)),
  ]


def _params_and_input(network):
  # Compiled: op-by-op initialisation is many times slower on CPU.
  params = jax.jit(network.init)(jax.random.PRNGKey(0),
                                 jnp.zeros((1, *_SHAPE)))["params"]
  x = jax.random.uniform(jax.random.PRNGKey(1), (6, *_SHAPE), minval=-1,
                         maxval=1)
  return params, x


def _apply_recording_layers(net, params, x):
  """net's logits (compiled), and (module, input, output) of each Conv and
  Dense call, in call order."""
  modules, seen = [], []  # filled while tracing

  def spy(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and isinstance(
        context.module, (nn.Dense, Conv)):
      modules.append(context.module)
      seen.append((args[0], out))
    return out

  def apply(params, x):
    with nn.intercept_methods(spy):
      logits = net.apply({"params": params}, x)
    return logits, list(seen)

  logits, inputs_outputs = jax.jit(apply)(params, x)
  return logits, [(m, i, o) for m, (i, o) in zip(modules, inputs_outputs)]


@pytest.mark.parametrize("name, build", _networks())
def test_bf16_logits_match_fp32_to_bf16_resolution(name, build):
  """Also: the convolutions run in bf16, the last layer in float32."""
  fp32, bf16 = build("float32"), build("bfloat16")
  params, x = _params_and_input(fp32)
  # The same parameter tree serves both: precision is not in the weights.
  bf16_shapes = jax.eval_shape(bf16.init, jax.random.PRNGKey(0),
                               jnp.zeros((1, *_SHAPE)))["params"]
  assert jax.tree.structure(params) == jax.tree.structure(bf16_shapes)
  reference = np.asarray(jax.jit(fp32.apply)({"params": params}, x),
                         np.float64)
  low, calls = _apply_recording_layers(bf16, params, x)
  assert low.dtype == jnp.float32
  error = np.abs(np.asarray(low, np.float64) - reference).max()
  scale = np.abs(reference).max()
  # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per value);
  # through two or three layers the logits stay within a few per cent of
  # their scale, and they do differ (the convolutions really ran in bf16).
  assert error <= 0.03 * scale, (name, error, scale)
  assert error > 0, name

  convs = [(i, o) for m, i, o in calls if isinstance(m, Conv)]
  assert convs and all(o.dtype == jnp.bfloat16 for _, o in convs), name
  # Every convolution after the first reads bf16 (the first casts the
  # float32 image itself).
  assert all(i.dtype == jnp.bfloat16 for i, _ in convs[1:]), name
  (last, features, out), = [c for c in calls if isinstance(c[0], nn.Dense)]
  assert calls[-1][0] is last  # the logit layer comes last
  assert features.dtype == out.dtype == jnp.float32
  kernel, bias = params[last.name]["kernel"], params[last.name]["bias"]
  assert kernel.dtype == bias.dtype == jnp.float32
  # Its arithmetic is float32's: a float64 product of its inputs to float32
  # rounding (bf16 arithmetic would be off by ~1e-2 relative).
  expected = (np.asarray(features, np.float64) @ np.asarray(kernel, np.float64)
              + np.asarray(bias, np.float64))
  np.testing.assert_allclose(np.asarray(out, np.float64), expected,
                             rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_bf16_ascent_and_loss_gradients_are_float32():
  _, build = _networks()[0]
  fp32, bf16 = build("float32"), build("bfloat16")
  params, x = _params_and_input(fp32)
  grads = {}
  for dtype, net in (("fp32", fp32), ("bf16", bf16)):
    logits_fn = lambda x, net=net: net.apply({"params": params}, x)
    logits, grads[dtype] = jax.jit(logit_ascent(logits_fn))(x, None)
    assert logits.dtype == jnp.float32 and grads[dtype].dtype == jnp.float32
  # The ascent climbs (nearly) the same direction in both precisions.
  a, b = (np.asarray(grads[k], np.float64).ravel() for k in ("fp32", "bf16"))
  assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99

  def bce(params):
    logits = bf16.apply({"params": params}, x)
    return losses.bce_loss(logits[:3], logits[3:])

  loss, param_grads = jax.jit(jax.value_and_grad(bce))(params)
  assert loss.dtype == jnp.float32
  assert {g.dtype for g in jax.tree.leaves(param_grads)} == {
      jnp.dtype(jnp.float32)}


def test_tiny_bf16_igm_run_keeps_float32_state(tmp_path):
  config = load_config("igm_texture.py:tiny")
  config.dtype = "bfloat16"
  config.rounds, config.generate.num_images = 1, 0
  state = train_and_evaluate(config, str(tmp_path))
  stored = (state.critic, state.opt_state, state.cascade, state.pool.images,
            state.negatives)
  floats = [a for a in jax.tree.leaves(stored)
            if jnp.issubdtype(a.dtype, jnp.floating)]
  assert floats and {a.dtype for a in floats} == {jnp.dtype(jnp.float32)}
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    (metrics,) = [json.loads(line) for line in f]
  assert np.isfinite(metrics["train_loss"])
  assert metrics["synthesis_logit_end"] > metrics["synthesis_logit_start"]


@pytest.mark.parametrize("dtype", ["float8", "bf16", "float64", "int8"])
def test_unknown_dtype_is_one_clear_sentence(dtype):
  model = ml_collections.ConfigDict(dict(name="dcgan", features=(8,),
                                         kernel_size=5, norm="layer"))
  with pytest.raises(ConfigError,
                     match=r"^Unknown config\.dtype=.*'bfloat16'.*\.$"):
    critics.build_critic(model, dtype)
