"""Cls_R and Cls_G (STIC Table 1): labelled samples judged by a classifier
that is not the model that made them.

  cls_r  a judge trained on the real training images classifies the
         generated images: its accuracy on them (do they look like their
         class?)
  cls_g  a judge trained on the generated images alone classifies the real
         test set: its accuracy (are they diverse and faithful enough to
         learn the classes from?)

The judge is ICL §4.1's conv net (`eval.judge_features`), trained from its
own seed with Adam for `eval.judge_steps` steps of batch 64 through the one
fit loop. The paper reports top-5 of a ResNet-50 over 1,000 classes; with
10 classes we report top-1. The real-trained judge is trained once per
process and training set and reused for every model judged.
"""
import jax
import jax.numpy as jnp
import ml_collections
import optax

from introjax.eval import robustness
from introjax.models import classifiers
from introjax.training import fit

_JUDGE_STREAM = 0x1D6E
_BATCH = 64
_REAL_JUDGES = {}   # (id of the images, settings) -> (images, params)


def settings(config):
  ev = config.get("eval") or {}
  return (int(ev.get("judge_steps", 500)),
          tuple(ev.get("judge_features", (32, 64, 128))),
          int(config.get("seed", 0)))


def train_judge(images, labels, num_classes, steps, features, seed):
  """(logits_fn, params) of a conv net trained on `images` in [-1, 1]
  (N, H, W, C) with integer `labels`."""
  net, params = train_judge_network(images, labels, num_classes, steps,
                                    features, seed)
  return classifiers.classifier_logits(net), params


def train_judge_network(images, labels, num_classes, steps, features, seed):
  """(module, params) of the judge `train_judge` trains (the module, for
  reading its convolutions: eval/features.py)."""
  net = classifiers.build_classifier(ml_collections.ConfigDict(
      {"name": "icl_conv", "features": features, "kernel_size": 5}),
      num_classes)
  logits_fn = classifiers.classifier_logits(net)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), _JUDGE_STREAM)
  params = classifiers.init_classifier(net, key, images.shape[1:])
  tx = optax.adam(1e-3)
  images, labels = jnp.asarray(images, jnp.float32), jnp.asarray(labels)

  @jax.jit
  def run(params, key):
    def step_loss(params, key):
      rows = jax.random.randint(key, (_BATCH,), 0, images.shape[0])
      logits = logits_fn(params, images[rows])
      loss = optax.softmax_cross_entropy_with_integer_labels(
          logits, labels[rows]).mean()
      return loss, {}
    params, _, _ = fit.fit(step_loss, tx, params, tx.init(params), key,
                           steps)
    return params

  return net, run(params, jax.random.fold_in(key, 1))


def accuracy(logits_fn, params, images, labels, batch_size=500):
  return 1.0 - robustness.test_error(logits_fn, params, jnp.asarray(images),
                                     jnp.asarray(labels), batch_size)


def _real_judge(subject, config):
  images, labels = subject.train_set
  chosen = settings(config)
  cache_key = (id(images),) + chosen
  if cache_key not in _REAL_JUDGES:
    # The images ride along so their id is not reused while cached.
    _REAL_JUDGES[cache_key] = (images, train_judge(
        images, labels, subject.num_classes, *chosen))
  return _REAL_JUDGES[cache_key][1]


def cls_r(subject, config):
  """{"cls_r": accuracy of the real-trained judge on the generated images}."""
  logits_fn, params = _real_judge(subject, config)
  return {"cls_r": accuracy(logits_fn, params, subject.generated,
                            subject.generated_labels)}


def cls_g(subject, config):
  """{"cls_g": accuracy on the real test set of a judge trained on the
  generated images}."""
  test_images, test_labels = subject.test_set
  logits_fn, params = train_judge(
      subject.generated, subject.generated_labels, subject.num_classes,
      *settings(config))
  return {"cls_g": accuracy(logits_fn, params, test_images, test_labels)}
