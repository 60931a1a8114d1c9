"""How a classifier mode turns networks into class logits (ICL §3.1, §3.3).

  softmax     one network with K outputs (ICL eq. 11)
  one_vs_all  K binary critics with their parameters stacked on a leading
              axis and run with `vmap`, so one compiled step trains (and one
              compiled loop synthesises for) all K, never K Python loops
  binary      one critic f; class 0 is the positive class, class 1 the rest,
              and its class logits are [f, 0], so softmax cross-entropy on
              them is eq. (7)'s binary cross-entropy and argmax is f > 0

Every mode gives
  init(key, input_shape)           -> params
  class_logits(params, x)          -> (B, K): prediction, FGSM, training loss
  own_logit(params, x)             -> (B,): the logit synthesis climbs for a
      class-major batch of pseudo-negatives (`num_negative_classes` equal
      blocks, block k made for class k): ln g_t(x) of ICL eq. (10)
  synthesis_scores(params, x)      -> (own logit, decision): the decision is
      the log-odds that x is classified as its class, what the early stop
      compares with 0
"""
import functools

import jax
import jax.numpy as jnp

from introjax.errors import ConfigError
from introjax.models import classifiers
from introjax.objectives import losses

MODES = ("softmax", "one_vs_all", "binary")


class ClassifierHeads:
  """The networks of one ICL mode for `num_classes` classes."""

  def __init__(self, mode, model_config, num_classes, dtype="float32"):
    if mode not in MODES:
      raise ConfigError(f"Unknown icl.mode={mode!r}; use one of "
                        f"{', '.join(MODES)}.")
    if mode == "one_vs_all" and num_classes < 2:
      raise ConfigError(
          f"icl.mode='one_vs_all' needs at least 2 classes, but the data has "
          f"{num_classes}; use icl.mode='binary' for a single class.")
    self.mode = mode
    self.num_classes = num_classes if mode != "binary" else 2
    outputs = num_classes if mode == "softmax" else 1
    self.network = classifiers.build_classifier(model_config, outputs, dtype)
    self._apply = classifiers.classifier_logits(self.network)
    # Synthesis makes pseudo-negatives for each class with its own critic
    # (softmax: its own output); a binary classifier has one positive class.
    self.num_negative_classes = 1 if mode == "binary" else num_classes
    self.loss = (losses.one_vs_all_icl_loss if mode == "one_vs_all"
                 else losses.softmax_icl_loss)

  def init(self, key, input_shape):
    init = functools.partial(classifiers.init_classifier, self.network,
                             input_shape=input_shape)
    if self.mode == "one_vs_all":
      return jax.vmap(init)(jax.random.split(key, self.num_classes))
    return init(key)

  def class_logits(self, params, x):
    if self.mode == "softmax":
      return self._apply(params, x)
    if self.mode == "one_vs_all":
      per_critic = jax.vmap(self._apply, in_axes=(0, None))(params, x)
      return per_critic[..., 0].T
    f = self._apply(params, x)
    return jnp.concatenate([f, jnp.zeros_like(f)], axis=1)

  def own_logit(self, params, x):
    k = self.num_negative_classes
    if self.mode == "one_vs_all":
      # Each critic sees only its own block: K× less work than running all
      # K critics on every pseudo-negative.
      blocks = x.reshape(k, -1, *x.shape[1:])
      return jax.vmap(self._apply)(params, blocks)[..., 0].reshape(-1)
    return self.synthesis_scores(params, x)[0]

  def synthesis_scores(self, params, x):
    if self.mode == "one_vs_all":
      own = self.own_logit(params, x)
      return own, own
    k = self.num_negative_classes
    logits = self.class_logits(params, x)
    classes = jnp.repeat(jnp.arange(k), x.shape[0] // k)[:, None]
    own = jnp.take_along_axis(logits, classes, axis=1)[:, 0]
    # Eq. (11) anchors no logit of real data at 0 (softmax cross-entropy is
    # shift-invariant, and the pseudo-negative term pushes every logit down:
    # after a few rounds real digits have own logits far below 0), so
    # "classified positive for class k" is p(k|x) > 1/2 under the softmax:
    # own − logsumexp(others) > 0. For binary ([f, 0]) this is f > 0.
    others = jnp.where(jax.nn.one_hot(classes[:, 0], logits.shape[1],
                                      dtype=bool), -jnp.inf, logits)
    return own, own - jax.nn.logsumexp(others, axis=1)
