"""Attentive-STIC's network (STIC §5): a DRAW reader and an LSTM encoder
give a feature vector f, a classifier works on f, and a DCGAN decoder maps
features back to images.

  filterbank   DRAW's Gaussian attention (Gregor et al. 2015, eq. 19–26):
               an N × N grid of Gaussian filters, centre (g_X, g_Y),
               stride δ, variance σ², intensity γ, from 5 numbers
  read         eq. 27: γ·[F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ], the two N × N glimpses
               of the image and of the error image, per channel
  AttentiveClassifier
               T glimpses: x̂_t = x − σ(x̂_{t−1}) (x̂_0 = 0), the attention
               parameters a linear map of the previous glimpse v_{t−1} and
               the encoder's state h_{t−1}, v_t = read(x, x̂_t), [f_t, h_t] =
               LSTM(v_t, h_{t−1}); f = f_T (in (−1, 1): an LSTM output). The
               classifier is an MLP on f; `decode` is a DCGAN generator
               (Dense to a small map, stride-2 transposed convolutions,
               tanh), cropped to the image size.

The paper writes v_t = R(x, x̂_t, v_{t−1}); DRAW conditions the attention on
its decoder's state, which the reader here does not have, so the encoder's
own previous state joins v_{t−1} (our reading; README "STIC").
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from introjax.errors import ConfigError


def check_glimpse(glimpse, glimpses, image_shape, field="stic.attentive"):
  """Refuses a glimpse that is not a whole number of pixels in 1 … the
  image's shorter side, or a glimpse count below 1, in one sentence."""
  side = min(image_shape[:2])
  if (isinstance(glimpse, bool) or not isinstance(glimpse, int)
      or not 1 <= glimpse <= side):
    raise ConfigError(
        f"{field}.glimpse={glimpse!r} must be a whole number of pixels from "
        f"1 to the image's shorter side {side} (the "
        f"{'×'.join(map(str, image_shape[:2]))} images; a DRAW glimpse is "
        "N × N filters inside the image).")
  if isinstance(glimpses, bool) or not isinstance(glimpses, int) or (
      glimpses < 1):
    raise ConfigError(f"{field}.glimpses={glimpses!r} must be a whole number "
                      "≥ 1 (glimpses the reader takes per image).")


def filterbank(params, glimpse, height, width):
  """DRAW eq. 19–26: (F_Y (B, N, H), F_X (B, N, W), γ (B,)) from the raw
  attention parameters `params` (B, 5) = (g̃_X, g̃_Y, log σ², log δ̃, log γ).
  Each filter row is normalised to sum to 1 over the pixels."""
  gx_, gy_, log_var, log_delta, log_gamma = jnp.split(params, 5, axis=-1)
  gx = (width + 1) / 2 * (gx_ + 1)
  gy = (height + 1) / 2 * (gy_ + 1)
  delta = (max(height, width) - 1) / max(glimpse - 1, 1) * jnp.exp(log_delta)
  var = jnp.exp(log_var)
  # DRAW numbers pixels and filters from 1: μ_i = g + (i − N/2 − 0.5)·δ.
  offsets = jnp.arange(1, glimpse + 1) - glimpse / 2 - 0.5

  def bank(centre, size):
    mu = centre + offsets * delta                      # (B, N)
    pixels = jnp.arange(1, size + 1)                   # (size,)
    f = jnp.exp(-jnp.square(pixels[None, None] - mu[..., None]) /
                (2 * var[..., None]))
    return f / jnp.maximum(f.sum(axis=-1, keepdims=True), 1e-8)

  return bank(gy, height), bank(gx, width), jnp.exp(log_gamma[:, 0])


def read(x, x_hat, params, glimpse):
  """DRAW eq. 27: (B, 2·N·N·C) = γ·[F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ], rasterised;
  x and x̂ (B, H, W, C)."""
  _, h, w, _ = x.shape
  fy, fx, gamma = filterbank(params, glimpse, h, w)
  glance = lambda image: jnp.einsum("bnh,bhwc,bmw->bnmc", fy, image, fx)
  v = jnp.concatenate([glance(x), glance(x_hat)], axis=-1)
  return gamma[:, None] * v.reshape(x.shape[0], -1)


class AttentiveClassifier(nn.Module):
  """The module docstring's network; `__call__` gives the logits of
  images, `encode`, `classify` and `decode` its three parts."""
  num_outputs: int
  image_shape: Sequence[int]
  glimpse: int = 4
  glimpses: int = 4
  hidden: int = 64
  decoder_features: Sequence[int] = (64, 32)

  def setup(self):
    self.attention = nn.Dense(5, name="attention")
    self.encoder = nn.OptimizedLSTMCell(self.hidden, name="encoder")
    self.head_hidden = nn.Dense(self.hidden, name="head_hidden")
    self.head = nn.Dense(self.num_outputs, name="logits")
    h, w, _ = self.image_shape
    ups = len(self.decoder_features)
    self._start = (-(-h // 2 ** ups), -(-w // 2 ** ups))
    self.project = nn.Dense(
        self._start[0] * self._start[1] * self.decoder_features[0],
        name="decoder_project")
    self.up = [nn.ConvTranspose(f, (4, 4), (2, 2), name=f"decoder_up{i}")
               for i, f in enumerate(tuple(self.decoder_features[1:]) +
                                     (self.image_shape[-1],))]

  def encode(self, x):
    """(B, H, W, C) images in [−1, 1] -> (B, hidden) features f."""
    b = x.shape[0]
    x = x.astype(jnp.float32)
    carry = (jnp.zeros((b, self.hidden)), jnp.zeros((b, self.hidden)))
    v = jnp.zeros((b, 2 * self.glimpse ** 2 * x.shape[-1]))
    x_hat = jnp.zeros_like(x)
    f = carry[1]
    for _ in range(self.glimpses):
      x_hat = x - jax.nn.sigmoid(x_hat)
      params = self.attention(jnp.concatenate([v, carry[1]], axis=-1))
      v = read(x, x_hat, params, self.glimpse)
      carry, f = self.encoder(carry, v)
    return f

  def classify(self, f):
    """(B, hidden) features -> (B, num_outputs) logits."""
    return self.head(nn.leaky_relu(self.head_hidden(f), 0.2))

  def decode(self, f):
    """(B, hidden) features -> (B, H, W, C) images in (−1, 1)."""
    y = self.project(f).reshape(f.shape[0], *self._start,
                                self.decoder_features[0])
    for i, layer in enumerate(self.up):
      y = nn.leaky_relu(y, 0.2)
      y = layer(y)
    h, w, _ = self.image_shape
    return jnp.tanh(y[:, :h, :w])

  def __call__(self, x):
    return self.classify(self.encode(x))

  def everything(self, x):
    """Touches every part (initialisation): (logits, reconstruction)."""
    f = self.encode(x)
    return self.classify(f), self.decode(f)
