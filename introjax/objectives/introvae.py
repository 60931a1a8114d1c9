"""IntroVAE's losses (Huang et al., NeurIPS 2018, eqs. 9–12) and the
Soft-IntroVAE objective (Daniel & Tamar, CVPR 2021) on the same networks.

Units: images are in [-1, 1] everywhere else in introjax, but the papers'
weights (β, β_rec, …) were tuned on pixels in [0, 1], so the reconstruction
terms measure the error in [0, 1] units ((x − x_r)/2). Every term is a sum
over one image's latent or pixel dimensions and a mean over the batch, as
both official codes compute them (eqs. 9–10 write sums over the N images;
a per-image mean keeps m independent of the batch size).

    kl_per_image        L_REG of one image, eq. 9: KL(N(μ, σ²) || N(0, I))
    squared_error       Σ ((x − x_r)/2)² of one image
    introvae_encoder_loss   eq. 11: L_REG(Z) + α Σ_s [m − L_REG(Z_s)]⁺ + β L_AE
    introvae_generator_loss eq. 12: α Σ_s L_REG(Z_s) + β L_AE
    soft_encoder_loss       Soft-IntroVAE's encoder loss (exp-ELBO of fakes)
    soft_generator_loss     Soft-IntroVAE's decoder loss

The stop-gradients of Algorithm 1 (ng) are applied by the trainer, which
decides what each loss is differentiated through; these functions are
plain arithmetic on the per-image terms.
"""
import jax
import jax.numpy as jnp

OBJECTIVES = ("introvae", "soft_introvae")


def kl_per_image(mu, logvar):
  """Eq. 9 for each image: ½ Σ_j (μ² + σ² − log σ² − 1), float32. (The
  paper prints the negative of this sum; the KL is ≥ 0.)"""
  mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(mu ** 2 + jnp.exp(logvar) - logvar - 1.0, axis=-1)


def squared_error(x, x_rec):
  """Σ over one image's pixels of ((x − x_rec)/2)²: the squared error on
  [0, 1] pixels, for [-1, 1] images."""
  diff = (x_rec.astype(jnp.float32) - x.astype(jnp.float32)) / 2.0
  return jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=-1)


def reconstruction_loss(x, x_rec):
  """Eq. 10 per image, batch mean: L_AE = ½ Σ ((x − x_r)/2)²."""
  return 0.5 * jnp.mean(squared_error(x, x_rec))


def introvae_encoder_loss(kl_real, kl_rec, kl_fake, l_ae, alpha, margin,
                          beta):
  """Eq. 11 / Algorithm 1 line 8–9: L_REG(Z) + α([m − L_REG(Z_r)]⁺ +
  [m − L_REG(Z_pp)]⁺) + β L_AE, the hinge on the batch mean (as the
  official code); kl_* are per-image, l_ae the batch's L_AE."""
  hinge = (jax.nn.relu(margin - jnp.mean(kl_rec))
           + jax.nn.relu(margin - jnp.mean(kl_fake)))
  return jnp.mean(kl_real) + alpha * hinge + beta * l_ae


def introvae_generator_loss(kl_rec, kl_fake, l_ae, alpha, beta):
  """Eq. 12 / Algorithm 1 lines 11–12: α(L_REG(Z_r) + L_REG(Z_pp)) + β L_AE."""
  return alpha * (jnp.mean(kl_rec) + jnp.mean(kl_fake)) + beta * l_ae


def soft_encoder_loss(err_real, kl_real, err_rec, kl_rec, err_fake, kl_fake,
                      beta_rec, beta_kl, beta_neg, scale, adversarial=1.0):
  """Soft-IntroVAE's encoder loss: the real images' scaled ELBO plus ¼ the
  mean of exp(−2·scale·ELBO) of the reconstructions and of the prior
  samples (each re-encoded and decoded again). `err_*` are per-image
  squared errors (Σ on [0, 1] pixels, their `mse` with sum reduction),
  `scale` = 1/(C·H·W). `adversarial` 0 drops the fakes' term (the VAE
  warm-up). The exponent is never positive, so it cannot overflow."""
  real = scale * (beta_rec * jnp.mean(err_real) + beta_kl * jnp.mean(kl_real))
  exp_rec = jnp.mean(jnp.exp(-2.0 * scale * (beta_rec * err_rec
                                             + beta_neg * kl_rec)))
  exp_fake = jnp.mean(jnp.exp(-2.0 * scale * (beta_rec * err_fake
                                              + beta_neg * kl_fake)))
  return real + adversarial * 0.25 * (exp_rec + exp_fake)


def soft_generator_loss(err_real, kl_rec, kl_fake, err_rec, err_fake,
                        beta_rec, beta_kl, scale, gamma_r=1e-8,
                        adversarial=1.0):
  """Soft-IntroVAE's decoder loss: scale·(β_rec·err(x, x_r) + ½β_kl·(KL of
  Enc(x_r) + KL of Enc(x_p)) + γ_r·½β_rec·(the re-reconstruction errors))."""
  return scale * (beta_rec * jnp.mean(err_real)
                  + adversarial * (0.5 * beta_kl * (jnp.mean(kl_rec)
                                                    + jnp.mean(kl_fake))
                                   + gamma_r * 0.5 * beta_rec
                                   * (jnp.mean(err_rec) + jnp.mean(err_fake))))
