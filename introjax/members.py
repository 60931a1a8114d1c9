"""The one registry of members, by `config.trainer`: how to train each, its
trainer class (whose `compiled_steps` introjax.aot compiles), and for those
that generate from a saved cascade, the model class that restores it
(`introjax.saved`).
"""
from typing import Callable, NamedTuple, Optional

from introjax.training import icl
from introjax.training import igm
from introjax.training import images
from introjax.training import introvae
from introjax.training import stic
from introjax.training import winn


class Member(NamedTuple):
  train: Callable            # (config, workdir) -> state
  trainer: type              # (config, mesh, abstract=True): compiled_steps
  model: Optional[type] = None  # the texture model class, if it samples


MEMBERS = {
    "igm": Member(igm.train_and_evaluate, igm.TextureIGM, igm.TextureIGM),
    "winn": Member(winn.train_and_evaluate, winn.TextureWINN,
                   winn.TextureWINN),
    "igm_images": Member(images.train_igm, images.ImageIGM, images.ImageIGM),
    "winn_images": Member(images.train_winn, images.ImageWINN,
                          images.ImageWINN),
    "icl": Member(icl.train_and_evaluate, icl.IntrospectiveClassifier),
    "stic": Member(stic.train_and_evaluate, stic.SynthesizeItClassifier),
    "introvae": Member(introvae.train_and_evaluate, introvae.IntroVAETrainer),
}


def sampling_members():
  return {name: m.model for name, m in MEMBERS.items() if m.model}
