"""IntroVAE in eager PyTorch: the speed benchmark's reference
(`python -m introjax.bench --workload=introvae`). Needs PyTorch (the
`[bench]` extra); nothing else in introjax imports this module.

The networks are Appendix B's residual encoder and generator exactly as
`introjax.models.introvae` builds them (no BatchNorm, the block's sum
divided by √2, nearest up-sampling, NCHW here), so the two have the same
parameters and `load_flax_params` copies ours in.

The losses are the official code's (github.com/hhb072/IntroVAE, main.py
`train`): its `kl_loss` (½ Σ_j of −(1 + log σ² − μ² − σ²) per image), its
`reconstruction_loss` (Σ over an image's pixels of the squared error,
batch mean), the hinge on the batch means, weighted as

    L_E = weight_rec·rec + weight_kl·(KL(x) + ½·weight_neg·Σ_s [m − KL(x_s)]⁺)
    L_G = weight_rec·rec + ½·weight_kl·Σ_s KL(Enc'(x_s))

With weight_kl = 1, weight_neg = 2α and weight_rec = β/8 (our L_AE is
½ Σ ((x − x_r)/2)² on [-1, 1] pixels, theirs Σ (x − x_r)²) this is eqs.
11–12 with our (α, β, m), except that the official G weight ½·weight_kl
is α only at α = ½; `IntroVAEStep` writes α there so that both sides
train the same objective.

The iteration does the forward and backward passes introjax's trainer
does (`IntroVAETrainer.step`): the E update through Enc(x), G(z), G(z_p)
and Enc of the detached x_r, x_p, differentiated for E's parameters
only; then the G update with fresh G(z), G(z_p) through the updated
encoder, differentiated for G's parameters only. (The official code
instead keeps the first graph with `retain_graph=True` and lets the G
update's backward accumulate onto the E loss's; PyTorch ≥ 1.5 refuses
that once `optimizerE.step()` has changed the encoder in place.)
"""
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_SQRT2 = math.sqrt(2.0)


def _lrelu(x):
  return F.leaky_relu(x, 0.2)


class ResBlock(nn.Module):
  """conv 3×3 → LeakyReLU(0.2) → conv 3×3, plus the input (through a 1×1
  conv where the width changes), /√2, LeakyReLU."""

  def __init__(self, cin, cout):
    super().__init__()
    self.expand = nn.Conv2d(cin, cout, 1) if cin != cout else None
    self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
    self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

  def forward(self, x):
    skip = x if self.expand is None else self.expand(x)
    h = self.conv2(_lrelu(self.conv1(x)))
    return _lrelu((h + skip) / _SQRT2)


class Encoder(nn.Module):
  """x (N, C, S, S) → (μ, log σ²), each (N, latent_dim)."""

  def __init__(self, channels, latent_dim, image_channels):
    super().__init__()
    self.conv_in = nn.Conv2d(image_channels, channels[0], 5, padding=2)
    self.res = nn.ModuleList(ResBlock(cin, cout) for cin, cout in
                             zip(channels[:-1], channels[1:]))
    self.res_out = ResBlock(channels[-1], channels[-1])
    self.moments = nn.Linear(16 * channels[-1], 2 * latent_dim)

  def forward(self, x):
    h = F.avg_pool2d(_lrelu(self.conv_in(x)), 2)
    for block in self.res:
      h = F.avg_pool2d(block(h), 2)
    h = self.res_out(h)
    return self.moments(h.flatten(1)).float().chunk(2, dim=1)


class Generator(nn.Module):
  """z (N, latent_dim) → images (N, C, S, S)."""

  def __init__(self, channels, latent_dim, image_channels):
    super().__init__()
    self.width = channels[-1]
    self.fc = nn.Linear(latent_dim, 16 * channels[-1])
    widths = list(reversed(channels))
    self.res = nn.ModuleList(ResBlock(cin, cout) for cin, cout in
                             zip([widths[0]] + widths[:-1], widths))
    self.res_out = ResBlock(channels[0], channels[0])
    self.conv_out = nn.Conv2d(channels[0], image_channels, 5, padding=2)

  def forward(self, z):
    h = F.relu(self.fc(z)).view(z.shape[0], self.width, 4, 4)
    for block in self.res:
      h = F.interpolate(block(h), scale_factor=2, mode="nearest")
    return self.conv_out(self.res_out(h)).float()


def parameter_count(module):
  return sum(p.numel() for p in module.parameters())


def _set(param, value):
  with torch.no_grad():
    param.copy_(torch.from_numpy(np.array(value, np.float32)))


def _load_conv(conv, flax_conv):
  # HWIO → OIHW
  _set(conv.weight, np.transpose(np.asarray(flax_conv["kernel"]),
                                 (3, 2, 0, 1)))
  _set(conv.bias, flax_conv["bias"])


def _load_block(block, flax_block):
  for name in ("conv1", "conv2") + (("expand",) if block.expand else ()):
    _load_conv(getattr(block, name), flax_block[name])


def load_flax_params(encoder, generator, enc_params, dec_params):
  """Copies introjax's Flax parameters ({"params": ...} of
  `models.introvae.Encoder`/`Generator`) into the two modules; the dense
  layers' rows and columns move from NHWC to NCHW order."""
  enc, dec = enc_params["params"], dec_params["params"]
  _load_conv(encoder.conv_in, enc["conv_in"])
  for i, block in enumerate(encoder.res):
    _load_block(block, enc[f"res{i}"])
  _load_block(encoder.res_out, enc["res_out"])
  kernel = np.asarray(enc["moments"]["kernel"])        # (4·4·C, 2L), HWC rows
  width = encoder.res_out.conv2.out_channels
  kernel = kernel.reshape(4, 4, width, -1).transpose(2, 0, 1, 3)
  _set(encoder.moments.weight, kernel.reshape(16 * width, -1).T)
  _set(encoder.moments.bias, enc["moments"]["bias"])
  kernel = np.asarray(dec["fc"]["kernel"])             # (L, 4·4·C), HWC columns
  width = generator.width
  kernel = kernel.reshape(-1, 4, 4, width).transpose(0, 3, 1, 2)
  _set(generator.fc.weight, kernel.reshape(kernel.shape[0], -1).T)
  bias = np.asarray(dec["fc"]["bias"]).reshape(4, 4, width).transpose(2, 0, 1)
  _set(generator.fc.bias, bias.reshape(-1))
  for i, block in enumerate(generator.res):
    _load_block(block, dec[f"res{i}"])
  _load_block(generator.res_out, dec["res_out"])
  _load_conv(generator.conv_out, dec["conv_out"])


# The official code's loss functions -------------------------------------------


def kl_loss(mu, logvar):
  """Per image: −½ Σ_j (1 + log σ² − μ² − σ²)."""
  return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)


def reconstruction_loss(prediction, target):
  """Σ over each image's pixels of the squared error, batch mean."""
  error = (prediction - target).reshape(prediction.shape[0], -1)
  return error.pow(2).sum(dim=-1).mean()


class IntroVAEStep:
  """Algorithm 1's iteration with two Adams, as introjax's trainer runs it
  (module docstring); `__call__(x, z_p, eps)` → (L_E, L_G), detached."""

  def __init__(self, encoder, generator, alpha, beta, margin,
               learning_rate=2e-4, betas=(0.9, 0.999)):
    self.encoder, self.generator = encoder, generator
    self.e_params = list(encoder.parameters())
    self.g_params = list(generator.parameters())
    self.weight_kl, self.weight_neg = 1.0, 2.0 * alpha
    self.weight_rec = beta / 8.0
    self.alpha, self.margin = alpha, margin
    self.opt_e = torch.optim.Adam(self.e_params, lr=learning_rate,
                                  betas=betas, eps=1e-8)
    self.opt_g = torch.optim.Adam(self.g_params, lr=learning_rate,
                                  betas=betas, eps=1e-8)

  def __call__(self, x, z_p, eps):
    enc, gen = self.encoder, self.generator
    # ===== Update E
    real_mu, real_logvar = enc(x)
    z = real_mu + eps * (0.5 * real_logvar).exp()
    rec, fake = gen(z), gen(z_p)
    rec_mu, rec_logvar = enc(rec.detach())
    fake_mu, fake_logvar = enc(fake.detach())
    loss_rec = reconstruction_loss(rec, x)
    loss_margin = kl_loss(real_mu, real_logvar).mean() + (
        F.relu(self.margin - kl_loss(rec_mu, rec_logvar).mean())
        + F.relu(self.margin - kl_loss(fake_mu, fake_logvar).mean())
    ) * 0.5 * self.weight_neg
    loss_e = loss_rec * self.weight_rec + loss_margin * self.weight_kl
    self.opt_e.zero_grad(set_to_none=True)
    loss_e.backward(inputs=self.e_params)
    self.opt_e.step()
    # ===== Update G, through the updated encoder
    z = z.detach()
    rec, fake = gen(z), gen(z_p)
    rec_mu, rec_logvar = enc(rec)
    fake_mu, fake_logvar = enc(fake)
    loss_g = reconstruction_loss(rec, x) * self.weight_rec + (
        kl_loss(rec_mu, rec_logvar).mean()
        + kl_loss(fake_mu, fake_logvar).mean()) * self.alpha
    self.opt_g.zero_grad(set_to_none=True)
    loss_g.backward(inputs=self.g_params)
    self.opt_g.step()
    return loss_e.detach(), loss_g.detach()


def training_loop(step, images, latent_dim, batch_size, steps, generator=None):
  """`steps` iterations of `step` on batches drawn uniformly with
  replacement from `images` ((N, C, S, S) uint8, mapped to [-1, 1]), with
  fresh z_p and ε each iteration; returns the last (L_E, L_G)."""
  losses = None
  for _ in range(steps):
    index = torch.randint(0, images.shape[0], (batch_size,),
                          generator=generator)
    x = images[index].float() / 127.5 - 1.0
    z_p = torch.randn(batch_size, latent_dim, generator=generator)
    eps = torch.randn(batch_size, latent_dim, generator=generator)
    losses = step(x, z_p, eps)
  return losses
