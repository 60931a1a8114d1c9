"""Losses, each a part chosen by name: `loss(apply_fn, batch, key) ->
(loss, aux)` with its own NaN diagnosis (`fix`, `culprit(metrics)`).

    bce              IGM §3.2.1: positives against pseudo-negatives
    wgan_gp          WINN eq. 5 + λ·gradient penalty (train.gp_weight)
    icl              ICL eq. 7/11 or one-vs-all (the classifier's mode)
    winn_classifier  WINN §5.6: softmax CE + α·(Wasserstein + λ·GP)
    vrm              STIC eq. 5: soft-target CE over K real classes + a
                     fake class, on real, mixup and synthesised rows
"""
from introjax.errors import ConfigError
from introjax.objectives import losses
from introjax.objectives import vrm
from introjax.objectives import wasserstein

LOSSES = ("bce", "wgan_gp", "icl", "winn_classifier", "vrm")


def build_loss(name, train=None, mode="softmax", alpha=0.01, gp_weight=None,
               num_classes=None):
  """The loss `name`; `train` (a config section) supplies train.gp_weight,
  `mode` the classifier mode of "icl", `alpha` WINN §5.6's weight,
  `num_classes` the real classes of "vrm"."""
  if gp_weight is None:
    gp_weight = train.get("gp_weight", 10.0) if train is not None else 10.0
  if name == "bce":
    return losses.BCELoss()
  if name == "wgan_gp":
    return wasserstein.WassersteinGPLoss(gp_weight=gp_weight)
  if name == "icl":
    return losses.ICLLoss(mode)
  if name == "winn_classifier":
    return wasserstein.WINNClassifierLoss(alpha=alpha, gp_weight=gp_weight)
  if name == "vrm":
    return vrm.VRMFakeClassLoss(num_classes)
  raise ConfigError(f"Unknown train.loss={name!r}; use one of "
                    f"{', '.join(map(repr, LOSSES))}.")
