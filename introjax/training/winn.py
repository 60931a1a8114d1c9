"""WINN-single and WINN (a cascade of K critics) on a texture (WINN
Algorithm 1, eq. 8, §5.1–5.2, App. C–D).

WINN runs the shared texture round (`igm.TextureTrainer`); its parts come
from configs/winn_texture.py: the App. C critic (model.name="winn"), the
Wasserstein loss with gradient penalty λ = 10 (train.loss="wgan_gp") under
Adam 1e-4, β = (0, 0.9), per-sample early stop at thresholds
~ U[min f(x⁺), max f(x⁺)] of the current critic on positives
(synthesis.stop="winn"), App. D's random up-sampling network as p0
(p0.name="upsampling"), patch-sized pseudo-negatives (§5.2 trains on
64×64 patches) and anysize synthesis of a larger working canvas at the end.
What is WINN's own is here:

* critics kept: `cascade.critics = K` splits the rounds into K equal cascades
  (eq. 8); each new critic starts from the last one's weights and optimiser
  state, as in the released code, and is kept frozen once its rounds end.
* synthesis start: every round of the first cascade climbs fresh samples
  of p0 (Algorithm 1: "Sample r noise samples from p0"; the released code
  does the same from a bank drawn once); later cascades climb the last
  cascade's final negatives (§5.1). WINN-single therefore never continues
  from the previous round's negatives: its round-t negatives are exactly
  what generation from p0 with the round-t critic produces.
* the classification step: k passes (Algorithm 1's k = 3) of
  `train.batches_per_pass` mini-batches, without a loss target.

Generation climbs p0 through every critic of the cascade in order (one
`lax.scan`), each stage with thresholds from its own critic.
"""
from introjax.errors import ConfigError
from introjax.training import igm

class TextureWINN(igm.TextureTrainer):
  """WINN on a texture: `cascade.critics` critics, each trained for an equal
  share of the rounds."""

  def __init__(self, config, mesh, shapes=None, abstract=False):
    cascade, rounds = config.cascade.critics, config.rounds
    if cascade < 1 or rounds % cascade:
      raise ConfigError(
          f"cascade.critics={cascade} must be ≥ 1 and divide rounds={rounds}, "
          "as each critic of the cascade trains for rounds/cascade rounds; "
          "set rounds to a multiple of cascade.critics.")
    super().__init__(config, mesh, shapes, abstract)

  def member_state_keys(self):
    # Where each cascade ends depends on `rounds` once there are several.
    extra = ("rounds",) if self.config.cascade.critics > 1 else ()
    return ("cascade.critics",) + extra

  def rounds_per_critic(self):
    cascade = self.config.cascade.critics
    return None if cascade == 1 else self.config.rounds // cascade

  @property
  def train_steps(self):
    return self.config.train.k * self.config.train.batches_per_pass

  @property
  def loss_target(self):
    return None

  def describe(self):
    cascade = self.config.cascade.critics
    return "WINN-single" if cascade == 1 else f"WINN ({cascade} critics)"

  def progress(self, round_index, rounds, metrics, seconds):
    return progress_line(round_index, rounds, metrics, seconds,
                         self.critic_index(round_index) + 1,
                         self.config.cascade.critics)


def progress_line(round_index, rounds, m, seconds, critic, critics):
  swd = f" | SWD {m['swd_mean']:.1f}" if "swd_mean" in m else ""
  thresholds = (f" (thresholds {m['synthesis_threshold_min']:+.2f}…"
                f"{m['synthesis_threshold_max']:+.2f})"
                if "synthesis_threshold_min" in m else "")
  return (f"round {round_index}/{rounds} (critic {critic}/{critics}) | "
          f"classify: {m['train_steps']} steps, Wasserstein "
          f"{m['train_wasserstein']:.3f}, penalty {m['train_penalty']:.3f} | "
          f"synthesize: {m['synthesis_steps_mean']:.0f} steps mean "
          f"(max {m['synthesis_steps_max']}/{m['synthesis_step_cap']}), "
          f"{m['synthesis_stopped_early']}/{m['synthesis_samples']} stopped "
          f"early, logit {m['synthesis_logit_start']:+.2f} → "
          f"{m['synthesis_logit_end']:+.2f}{thresholds}{swd} | "
          f"{seconds:.1f} s")


def train_and_evaluate(config, workdir):
  """Trains WINN-single (or a WINN cascade) per `config`, resuming from
  `workdir`, then writes the final texture at `generate.size` from p0."""
  return igm.train_texture(TextureWINN, config, workdir)
