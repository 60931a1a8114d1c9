"""The classifiers: shapes, parameter count, batch independence, and
gradients through `conv2d` equal to those of plain XLA convolutions."""
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from introjax.errors import ConfigError
from introjax.models import classifiers


def model_config(name, features=(8, 16), kernel_size=5):
  return ml_collections.ConfigDict(
      dict(name=name, features=features, kernel_size=kernel_size))


@pytest.fixture(scope="module")
def resnet():
  """ResNet-32's network with one block per stage (each kind of block and
  shortcut once: the properties below hold block by block) on small
  3-channel images, its params and logits function."""
  net = classifiers.ResNet32(num_outputs=10, blocks_per_stage=1)
  init = jax.jit(classifiers.init_classifier, static_argnums=(0, 2))
  params = init(net, jax.random.PRNGKey(0), (12, 12, 3))
  return net, params, jax.jit(classifiers.classifier_logits(net))


def test_build_classifier_names():
  net = classifiers.build_classifier(model_config("icl_conv", (4, 8, 16), 3),
                                     7, "bfloat16")
  assert isinstance(net, classifiers.ICLConvNet)
  assert (net.features, net.kernel_size, net.num_outputs) == ((4, 8, 16), 3, 7)
  assert net.dtype == jnp.bfloat16
  assert isinstance(classifiers.build_classifier(model_config("resnet32"), 3),
                    classifiers.ResNet32)
  with pytest.raises(ConfigError, match="'icl_conv', 'resnet32'"):
    classifiers.build_classifier(model_config("vgg"), 10)


def test_icl_conv_shape_and_finite_input_gradient():
  net = classifiers.ICLConvNet(num_outputs=10)
  params = classifiers.init_classifier(net, jax.random.PRNGKey(0), (28, 28, 1))
  # 28 → 14 → 7 → 4 → 2 with SAME padding: 2·2·512 features into the Dense.
  assert params["logits"]["kernel"].shape == (2 * 2 * 512, 10)
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 28, 28, 1), minval=-1)
  logits_fn = jax.jit(classifiers.classifier_logits(net))
  logits = logits_fn(params, x)
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32
  g = jax.jit(jax.grad(lambda x: jnp.sum(logits_fn(params, x)[:, 3])))(x)
  assert g.shape == x.shape and np.all(np.isfinite(g)) and np.any(g != 0)


def test_resnet32_shape_and_finite_input_gradient(resnet):
  _, params, logits_fn = resnet
  # The identity shortcut, and the 1×1 projections where a stage narrows.
  assert "shortcut" not in params["stage0_block0"]
  assert params["stage1_block0"]["shortcut"]["kernel"].shape == (1, 1, 16, 32)
  assert params["stage2_block0"]["shortcut"]["kernel"].shape == (1, 1, 32, 64)
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 12, 12, 3), minval=-1)
  logits = logits_fn(params, x)
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32
  g = jax.jit(jax.grad(lambda x: jnp.sum(logits_fn(params, x)[:, 0])))(x)
  assert g.shape == x.shape and np.all(np.isfinite(g)) and np.any(g != 0)


def test_resnet32_is_batch_independent(resnet):
  _, params, logits_fn = resnet
  x = jax.random.normal(jax.random.PRNGKey(2), (5, 12, 12, 3))
  # The same first sample among different, rescaled companions.
  one = logits_fn(params, x[:3])
  other = logits_fn(params, jnp.concatenate([x[:1], 10 * x[3:]]))
  np.testing.assert_allclose(other[0], one[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(other[1:], one[1:])


def test_resnet32_parameter_count():
  # The CIFAR ResNet-32 with BatchNorm (γ, β) and zero-padding shortcuts has
  # 464,154 parameters: 461,232 conv weights + 2,272 norm + 650 Dense. Flax's
  # LayerNorm over (H, W, C) keeps one scale and bias per channel, as BN did,
  # so ours differs only by
  #   conv biases: 16 + 10·16 + 10·32 + 10·64                     =  1,136
  #   1×1 shortcuts 16→32, 32→64 (kernel + bias + LayerNorm):
  #     (512 + 32 + 64) + (2,048 + 64 + 128)                      =  2,848
  # 464,154 + 3,984 = 468,138 on RGB; a grey image has 3·3·2·16 = 288 fewer.
  net = classifiers.ResNet32(num_outputs=10)

  def count(input_shape):
    shapes = jax.eval_shape(
        lambda k: classifiers.init_classifier(net, k, input_shape),
        jax.random.PRNGKey(0))
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))

  assert count((32, 32, 3)) == 468_138
  assert count((28, 28, 1)) == 467_850


def reference_icl_conv(params, x, num_layers):
  """ICLConvNet's forward pass with `lax.conv_general_dilated`."""
  for i in range(num_layers):
    p = params[f"conv{i}"]
    x = lax.conv_general_dilated(x, p["kernel"], (2, 2), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.nn.leaky_relu(x + p["bias"], 0.2)
  x = x.reshape(x.shape[0], -1)
  return x @ params["logits"]["kernel"] + params["logits"]["bias"]


def test_icl_conv_gradients_match_xla_convolutions():
  net = classifiers.ICLConvNet(num_outputs=10)
  params = classifiers.init_classifier(net, jax.random.PRNGKey(3), (28, 28, 1))
  kx, kw = jax.random.split(jax.random.PRNGKey(4))
  x = jax.random.uniform(kx, (8, 28, 28, 1), minval=-1)
  w = jax.random.normal(kw, (8, 10))
  ours = classifiers.classifier_logits(net)
  ref = lambda params, x: reference_icl_conv(params, x, 4)
  np.testing.assert_allclose(jax.jit(ours)(params, x), ref(params, x),
                             rtol=1e-5,
                             atol=1e-6)

  def grads(f):
    return jax.jit(jax.grad(lambda p, x: jnp.sum(f(p, x) * w),
                            argnums=(0, 1)))(params, x)
  (gp_ours, gx_ours), (gp_ref, gx_ref) = grads(ours), grads(ref)
  scale = float(jnp.max(jnp.abs(gx_ref)))
  np.testing.assert_allclose(gx_ours, gx_ref, rtol=1e-5, atol=1e-5 * scale)
  for ours_leaf, ref_leaf in zip(jax.tree.leaves(gp_ours),
                                 jax.tree.leaves(gp_ref)):
    np.testing.assert_allclose(ours_leaf, ref_leaf, rtol=1e-5,
                               atol=1e-5 * float(jnp.max(jnp.abs(ref_leaf))))
