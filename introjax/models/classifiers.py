"""Multi-class classifiers: CNNs mapping (B, H, W, C) images to (B, K) logits.

  icl_conv  ICL §4.1's MNIST network (a DCGAN discriminator without BatchNorm)
  resnet32  the CIFAR ResNet-32 of He et al. with per-sample LayerNorm in
            place of BatchNorm, as WINN §5.6 uses it
  wrn       a Wide ResNet (Zagoruyko & Komodakis) without BatchNorm, as JEM
            and STIC §4 use WRN-28-10; every convolution is named conv1,
            conv2, … in forward order, so STIC's Gram layers "conv21"–"conv28"
            are names of this network

`feature_taps` reads any named convolution's output through the same
forward pass (STIC's Gram matrices), without a second network.

Every convolution goes through `layers.Conv` (so `conv2d` and its CPU
backward), and no layer mixes samples: a sample's logits and input gradient
never depend on the rest of the batch, which synthesis and FGSM rely on.
"""
import re
from typing import Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections

from introjax.errors import ConfigError
from introjax.models.layers import Conv, compute_dtype, float32_logits

# He et al.'s initialiser for (leaky) ReLU networks trained from scratch by
# SGD; DCGAN's N(0, 0.02²) left these nets at chance for several epochs.
_HE = nn.initializers.he_normal()


class ICLConvNet(nn.Module):
  """ICL §4.1's MNIST network: strided 5×5 convs, LeakyReLU 0.2, no norm.

  "4 convolutional layers, each having a 5 × 5 filter size with 64, 128, 256
  and 512 channels, respectively ... stride 2, and no pooling layers ...
  LeakyReLU activations ... batch normalization layers are not used." The
  last feature map is flattened into a Dense layer with `num_outputs` logits.
  """
  num_outputs: int
  features: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = Conv(f, self.kernel_size, stride=2, dtype=self.dtype,
               kernel_init=_HE, name=f"conv{i}")(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    return float32_logits(x, self.num_outputs, "logits")


def _layer_norm(dtype, name):
  # Per sample over (H, W, C) with a per-channel scale and bias (Flax's
  # feature axis, as TF's layer_norm that WINN used): the same parameters
  # serve any image size.
  return nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=dtype, name=name)


class _BasicBlock(nn.Module):
  """conv3×3 – norm – ReLU – conv3×3 – norm, plus the shortcut, then ReLU."""
  features: int
  stride: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    y = Conv(self.features, 3, self.stride, self.dtype, _HE, name="conv0")(x)
    y = nn.relu(_layer_norm(self.dtype, "norm0")(y))
    y = Conv(self.features, 3, 1, self.dtype, _HE, name="conv1")(y)
    y = _layer_norm(self.dtype, "norm1")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = Conv(self.features, 1, self.stride, self.dtype, _HE,
               name="shortcut")(x)
      x = _layer_norm(self.dtype, "shortcut_norm")(x)
    return nn.relu(x + y)


class ResNet32(nn.Module):
  """The CIFAR ResNet-32 (He et al. 2016, §4.2) with LayerNorm for BatchNorm.

  A 3×3 conv to widths[0], then 3 stages of `blocks_per_stage` basic blocks
  (widths 16, 32, 64; the first block of stages 2 and 3 has stride 2), global
  average pooling and a Dense layer: 6·5 + 2 = 32 layers. Each BatchNorm is a
  per-sample LayerNorm over (H, W, C), as in WINN §5.6, so logits never depend
  on the batch. Downsampling shortcuts are a 1×1 stride-2 conv followed by a
  LayerNorm (He et al.'s option B, not the parameter-free zero-padding option
  A); other shortcuts are the identity. Convs keep `Conv`'s bias.
  """
  num_outputs: int
  widths: Sequence[int] = (16, 32, 64)
  blocks_per_stage: int = 5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = Conv(self.widths[0], 3, 1, self.dtype, _HE, name="conv0")(x)
    x = nn.relu(_layer_norm(self.dtype, "norm0")(x))
    for s, width in enumerate(self.widths):
      for b in range(self.blocks_per_stage):
        stride = 2 if s > 0 and b == 0 else 1
        x = _BasicBlock(width, stride, self.dtype,
                        name=f"stage{s}_block{b}")(x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return float32_logits(x, self.num_outputs, "logits")


class _WideBlock(nn.Module):
  """JEM's WRN block without BatchNorm: LeakyReLU 0.2 – conv3×3 (stride) –
  LeakyReLU – conv3×3, plus the shortcut (a 1×1 conv where the shape
  changes). `first` numbers its convolutions."""
  features: int
  stride: int
  first: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    y = nn.leaky_relu(x, 0.2)
    y = Conv(self.features, 3, self.stride, self.dtype, _HE,
             name=f"conv{self.first}")(y)
    y = nn.leaky_relu(y, 0.2)
    y = Conv(self.features, 3, 1, self.dtype, _HE,
             name=f"conv{self.first + 1}")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = Conv(self.features, 1, self.stride, self.dtype, _HE,
               name=f"conv{self.first + 2}")(x)
    return x + y


class WideResNet(nn.Module):
  """WRN-depth-widen without BatchNorm (STIC §4, after JEM): a 3×3 conv to
  16, three groups of (depth − 4)/6 blocks of widths 16k, 32k, 64k (the
  first block of groups 2 and 3 has stride 2), LeakyReLU, global average
  pooling and a Dense layer. With no norm layer a sample's logits never
  depend on the batch. WRN-28-10 has 28 convolutions, conv1 … conv28."""
  num_outputs: int
  depth: int = 28
  widen: int = 10
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    blocks = (self.depth - 4) // 6
    x = Conv(16, 3, 1, self.dtype, _HE, name="conv1")(x)
    index, in_features = 2, 16
    for group, width in enumerate((16, 32, 64)):
      width *= self.widen
      for b in range(blocks):
        stride = 2 if group > 0 and b == 0 else 1
        shortcut = stride != 1 or in_features != width
        x = _WideBlock(width, stride, index, self.dtype,
                       name=f"group{group}_block{b}")(x)
        index += 3 if shortcut else 2
        in_features = width
    x = nn.leaky_relu(x, 0.2)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return float32_logits(x, self.num_outputs, "logits")


SCORE_HEADS = ("shared", "on_score")


def check_score_head(head, name="head"):
  """One sentence for a head ScoreClassifier does not know; `name` is how
  the caller spells the setting."""
  if head not in SCORE_HEADS:
    raise ConfigError(f"Unknown {name}={head!r}; use "
                      f"{' or '.join(map(repr, SCORE_HEADS))}.")


class ScoreClassifier(nn.Module):
  """Score-STIC's network (STIC §5): the classifier `trunk`, its last layer
  "matched with input layer dimension" to give the score s(x) ≈ ∇ₓ log p(x)
  (Song & Ermon's criterion for a score network), "followed by softmax
  classification". Two readings of that phrase (`head`):

    shared    the trunk's last layer has D + `num_outputs` units: the first
              D are s(x), the rest the class logits, so s(x) and p(y|x)
              read the same features and ∇ₓ log p(y|x) does not pass
              through ∇ₓs (the trunk must be built with D + num_outputs)
    on_score  a Dense layer from s(x) to the logits (the trunk built with D
              outputs): ∇ₓ log p(y|x) = ∇ₓs · (…), the Jacobian whose trace
              the regulariser drives down; its chains are worse on the
              digits (BENCHMARKS.md, "Score-STIC, fixed")

  `score` gives s(x) shaped like x; the trunk's convolutions keep their
  names under "trunk/" (conv0 … resolve to them)."""
  trunk: nn.Module
  num_outputs: int
  head: str = "shared"

  def setup(self):
    check_score_head(self.head)
    if self.head == "on_score":
      self.classify = nn.Dense(self.num_outputs, dtype=jnp.float32,
                               name="logits")

  def score(self, x):
    return self.score_and_logits(x)[0]

  def score_and_logits(self, x):
    out = self.trunk(x).astype(jnp.float32)
    d = x[0].size
    s = out[:, :d]
    logits = self.classify(s) if self.head == "on_score" else out[:, d:]
    return s.reshape(x.shape), logits

  def __call__(self, x):
    return self.score_and_logits(x)[1]


CLASSIFIERS = ("icl_conv", "resnet32", "wrn")


def build_classifier(model_config: ml_collections.ConfigDict, num_outputs: int,
                     dtype="float32") -> nn.Module:
  """The classifier named by `model_config.name`, with `num_outputs` logits.

  `model_config.features` and `kernel_size` configure icl_conv; resnet32 has
  the fixed ResNet-32 shape and ignores them; `depth` and `widen` configure
  wrn.
  """
  name = model_config.name
  if name == "wrn":
    depth, widen = model_config.get("depth", 28), model_config.get("widen", 10)
    if depth < 10 or (depth - 4) % 6 or widen < 1:
      raise ConfigError(f"model.depth={depth} and model.widen={widen} do not "
                        "make a Wide ResNet: depth must be 6n + 4 (10, 16, "
                        "22, 28, …) and widen ≥ 1.")
    return WideResNet(num_outputs=num_outputs, depth=depth, widen=widen,
                      dtype=compute_dtype(dtype))
  if name == "icl_conv":
    return ICLConvNet(num_outputs=num_outputs,
                      features=tuple(model_config.features),
                      kernel_size=model_config.kernel_size,
                      dtype=compute_dtype(dtype))
  if name == "resnet32":
    return ResNet32(num_outputs=num_outputs, dtype=compute_dtype(dtype))
  raise ConfigError(f"Unknown classifier model.name={name!r}; the known "
                    f"classifiers are: {', '.join(map(repr, CLASSIFIERS))}.")


def init_classifier(module: nn.Module, key, input_shape):
  """Parameters for `module` on inputs of shape (H, W, C)."""
  return module.init(key, jnp.zeros((1, *input_shape), jnp.float32))["params"]


def classifier_logits(module: nn.Module):
  """`params, x -> (B, num_outputs) logits` as a plain function."""
  def logits(params, x):
    return module.apply({"params": params}, x)
  return logits


def _conv_outputs(module, params, x):
  """(logits, {path: output}) of every convolution of `module`, the path its
  module names joined by "/" (e.g. "conv21", "stage2_block4/conv1")."""
  logits, state = module.apply(
      {"params": params}, x, mutable=["intermediates"],
      capture_intermediates=lambda mdl, method: (
          method == "__call__" and isinstance(mdl, Conv)))
  outputs = {"/".join(path[:-1]): value[0] for path, value in
             traverse_util.flatten_dict(state["intermediates"]).items()}
  return logits, outputs


def _forward_order(path):
  # conv2 before conv10: compare the digit runs as numbers.
  return [int(p) if p.isdigit() else p
          for p in re.split(r"(\d+)", path)]


def conv_names(module: nn.Module, input_shape):
  """The paths of `module`'s convolutions (what `feature_taps` reads),
  numbered ones in numeric order."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)

  def run(x):
    params = module.init(jax.random.PRNGKey(0), x)["params"]
    return _conv_outputs(module, params, x)[1]

  return sorted(jax.eval_shape(run, x), key=_forward_order)


def resolve_conv_names(module: nn.Module, input_shape, names, field):
  """The conv paths `names` mean: a full path, or a last component that
  only one convolution has (WRN's "conv21"). Refuses others, naming
  `field` and the network's convolutions."""
  paths = conv_names(module, input_shape)
  resolved = []
  for name in names:
    hits = [p for p in paths if p == name or p.split("/")[-1] == name]
    if len(hits) != 1:
      what = "no" if not hits else "more than one"
      raise ConfigError(
          f"{field} names {name!r}, but the network has {what} convolution "
          f"of that name; its convolutions are {', '.join(paths)}.")
    resolved.append(hits[0])
  return tuple(resolved)


def feature_taps(module: nn.Module, paths: Sequence[str]):
  """`params, x -> (logits, [output of each conv in paths])`: one forward
  pass that also returns the named convolutions' outputs (paths from
  `resolve_conv_names`), for STIC's Gram matrices."""
  paths = tuple(paths)

  def taps(params, x):
    logits, outputs = _conv_outputs(module, params, x)
    return logits, [outputs[p] for p in paths]

  return taps
