"""The network each STIC variant trains, and the space its chains move in.

A variant names one of three networks (NETWORK_OF); each gives the trainer
the same five things — `init`, `logits` (K + 1 outputs of images), a
`regulariser` added to eq. 5 on the batch's real rows, `encode` / `decode`
between images and the chains' space, and the `score_function` the sampler
climbs there:

  classifier  erm, stic_erm, stic: the `model.name` classifier; chains are
              images; gram_regularised on `stic.gram_layers` (or
              target_logit for sampler "sgld"); no regulariser
  score       score_stic (STIC §5): models.classifiers.ScoreClassifier
              around the `model.name` network, s(x) and the logits from
              one last layer (`stic.score.head` "shared"; "on_score": the
              logits a Dense layer of s(x)); regulariser
              `stic.score.weight` × objectives/score_matching's
              E[½‖s‖² + tr ∇ₓs + ½‖y − p(y|x)‖²] on the real rows (plus
              N(0, `stic.score.data_noise`²), 0: as written); the
              classifier's score function plus `stic.score.guidance` × the
              learned s(x) (scores.plus_learned_score)
  attentive   attentive_stic (STIC §5): models/attention.py's DRAW reader,
              LSTM encoder, MLP classifier on the features f and DCGAN
              decoder; regulariser `stic.attentive.reconstruction_weight` ×
              the real rows' mean squared error of decode(encode(x)) (the
              decoder learns to draw x from f; the encoder keeps what it
              needs); chains are encoded to f, GRMALA runs on f with the
              Gram term of f itself (a 1 × 1 map of `hidden` channels, its
              reference the encoded reference image, weight
              `stic.attentive.gram_weight`), and the result is decoded
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from introjax.errors import ConfigError
from introjax.models import attention
from introjax.models import classifiers
from introjax.objectives import score_matching
from introjax.sampling import scores

NETWORK_OF = {"erm": "classifier", "stic_erm": "classifier",
              "stic": "classifier", "score_stic": "score",
              "attentive_stic": "attentive"}


class ImageClassifier:
  """The `model.name` classifier with K + 1 outputs; chains in pixels."""

  def __init__(self, config, k, image_shape):
    self.config, self.k, self.image_shape = config, k, tuple(image_shape)
    self.sampler = config.stic.sampler
    self.module = self._module()
    self.gram_weight = self._gram_weight()
    self.gram_paths = self._gram_paths() if self.gram_weight else ()
    self._taps = classifiers.feature_taps(self.module, self.gram_paths)

  def _gram_paths(self):
    return classifiers.resolve_conv_names(
        self.module, self.image_shape, self.config.stic.gram_layers,
        "stic.gram_layers")

  def _module(self):
    return classifiers.build_classifier(self.config.model, self.k + 1,
                                        self.config.dtype)

  def _gram_weight(self):
    return self.config.stic.gram_weight if self.sampler == "grmala" else 0.0

  def init(self, key):
    return classifiers.init_classifier(self.module, key, self.image_shape)

  def logits(self, params, x):
    return self.module.apply({"params": params}, x)

  def regulariser(self, params, x, targets, key):
    del params, x, targets, key
    return 0.0, {}

  def encode(self, params, x):
    del params
    return x

  def decode(self, params, z):
    del params
    return z

  def _space(self, params):
    """(logits_fn, taps_fn, reference → feature maps) in the chains' space."""
    taps = functools.partial(self._taps, params)
    return (functools.partial(self.logits, params), taps,
            lambda references: taps(references)[1])

  def score_function(self, params, targets, references):
    """What the chains climb: gram_regularised log p(y|x), or for sampler
    "sgld" JEM's energy f(x)[y]."""
    logits, taps, reference_maps = self._space(params)
    if self.sampler == "sgld":
      return scores.target_logit(logits, targets)
    grams = ([scores.gram_matrix(f) for f in reference_maps(references)]
             if self.gram_weight else [])
    return scores.gram_regularised(taps, targets, grams, self.gram_weight)


def score_head(config):
  """`stic.score.head`; runs saved before it existed had the Dense head."""
  return config.stic.score.get("head", "on_score")


class ScoreNetwork(ImageClassifier):
  """Score-STIC: s(x) then softmax classification (module docstring)."""

  def _module(self):
    head = score_head(self.config)
    d = int(np.prod(self.image_shape))
    trunk = classifiers.build_classifier(
        self.config.model, d + (self.k + 1 if head == "shared" else 0),
        self.config.dtype)
    return classifiers.ScoreClassifier(trunk=trunk, num_outputs=self.k + 1,
                                       head=head)

  def learned_score(self, params, x):
    return self.module.apply({"params": params}, x,
                             method=classifiers.ScoreClassifier.score)

  def regulariser(self, params, x, targets, key):
    s = self.config.stic.score
    fn = lambda x: self.module.apply(
        {"params": params}, x,
        method=classifiers.ScoreClassifier.score_and_logits)
    k_noise, k_trace = jax.random.split(key)
    # Song & Ermon's remedy for data on a manifold (the digits' blank
    # borders make E[tr ∇ₓs] unbounded below): score-match the data
    # perturbed by N(0, data_noise²); 0 is the paper's equation as written.
    x = x + s.data_noise * jax.random.normal(k_noise, x.shape, x.dtype)
    value, terms = score_matching.score_stic_regulariser(
        fn, x, targets, k_trace, s.trace, s.projections)
    return s.weight * value, terms

  def score_function(self, params, targets, references):
    return scores.plus_learned_score(
        super().score_function(params, targets, references),
        functools.partial(self.learned_score, params),
        self.config.stic.score.guidance)


class AttentiveNetwork(ImageClassifier):
  """Attentive-STIC: GRMALA on the reader's features (module docstring)."""

  def _module(self):
    a = self.config.stic.attentive
    attention.check_glimpse(a.glimpse, a.glimpses, self.image_shape)
    features = tuple(a.decoder_features)
    if a.hidden < 1 or not features or min(features) < 1:
      raise ConfigError(
          f"stic.attentive.hidden={a.hidden} and stic.attentive."
          f"decoder_features={features} must be ≥ 1 (and at least one "
          "decoder width).")
    return attention.AttentiveClassifier(
        num_outputs=self.k + 1, image_shape=self.image_shape,
        glimpse=a.glimpse, glimpses=a.glimpses, hidden=a.hidden,
        decoder_features=features)

  def _gram_weight(self):
    return (self.config.stic.attentive.gram_weight
            if self.sampler == "grmala" else 0.0)

  def _gram_paths(self):
    return ()   # the Gram term reads the features f, not a convolution

  def init(self, key):
    x = jnp.zeros((1, *self.image_shape), jnp.float32)
    return self.module.init(
        key, x, method=attention.AttentiveClassifier.everything)["params"]

  def _apply(self, method, params, x):
    return self.module.apply({"params": params}, x, method=method)

  def encode(self, params, x):
    return self._apply(attention.AttentiveClassifier.encode, params, x)

  def decode(self, params, z):
    return self._apply(attention.AttentiveClassifier.decode, params, z)

  def regulariser(self, params, x, targets, key):
    del targets, key
    error = jnp.mean(jnp.square(self.decode(params, self.encode(params, x))
                                - x))
    return (self.config.stic.attentive.reconstruction_weight * error,
            {"reconstruction_mse": error})

  def _space(self, params):
    classify = functools.partial(
        self._apply, attention.AttentiveClassifier.classify, params)
    as_map = lambda f: [f[:, None, None, :]]
    return (classify, lambda f: (classify(f), as_map(f)),
            lambda references: as_map(self.encode(params, references)))


_NETWORKS = {"classifier": ImageClassifier, "score": ScoreNetwork,
             "attentive": AttentiveNetwork}


def build(kind, config, k, image_shape):
  return _NETWORKS[kind](config, k, image_shape)
