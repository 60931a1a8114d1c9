"""Trained models restored from a training workdir, for the commands that
use them without training (introjax.sample, introjax.compare,
introjax.evaluate): texture and image models with their cascades, STIC
classifiers, and the networks of any critic or classifier.
"""
import ml_collections

from introjax import checkpoint as ckpt_lib
from introjax import parallel
from introjax.errors import UserError
from introjax.members import sampling_members
from introjax.models import cascade as cascade_lib
from introjax.sampling import stopping
from introjax.training import icl
from introjax.training import stic


def _latest_meta(checkpoints, workdir, round_index):
  """(round, meta) of `round_index` (default: the latest) in `workdir`."""
  latest = checkpoints.latest_round()
  if latest is None:
    raise UserError(f"No checkpoint in {checkpoints.directory}; train first"
                    " with python -m introjax.main --workdir="
                    f"{workdir} --config=...")
  round_index = latest if round_index is None else round_index
  if round_index not in checkpoints.all_rounds():
    raise UserError(
        f"No checkpoint of round {round_index} in {checkpoints.directory}; "
        f"it holds rounds {checkpoints.all_rounds()}.")
  return round_index, checkpoints.restore_meta(round_index)


def saved_trainer(workdir):
  """The `config.trainer` of the latest checkpoint in `workdir`."""
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    _, meta = _latest_meta(checkpoints, workdir, None)
  finally:
    checkpoints.close()
  return meta["config"]["trainer"]


def load_model(workdir, round_index=None, with_data=False):
  """(texture model, cascade, round) from the checkpoints in `workdir`.

  The model is built from the checkpoint alone (its config and the
  positives' shapes), without reading the training data, unless
  `with_data` asks for the positives or the member's stop rule draws its
  thresholds from them (WINN's); checkpoints written before the shapes were
  saved read the data too."""
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    round_index, meta = _latest_meta(checkpoints, workdir, round_index)
    config = ml_collections.ConfigDict(meta["config"])
    models = sampling_members()
    if config.trainer not in models:
      raise UserError(
          f"{workdir} holds a {config.trainer!r} model; textures are drawn "
          f"from {' or '.join(models)} workdirs only.")
    needs_data = with_data or "shapes" not in meta or getattr(
        stopping.build_stop_rule(config.synthesis), "needs_positives", False)
    model = models[config.trainer](
        config, parallel.make_mesh(),
        shapes=None if needs_data else meta["shapes"])
    items = checkpoints.restore(
        round_index, model.restore_targets(meta, only_critics=True))
  finally:
    checkpoints.close()
  return model, items["critics"], round_index


def load_classifier(workdir, round_index=None):
  """(STIC model, {variant: params}, reference bank, round) from
  `workdir`'s checkpoints, without the training data."""
  checkpoints = ckpt_lib.Checkpointer(workdir)
  try:
    round_index, meta = _latest_meta(checkpoints, workdir, round_index)
    config = ml_collections.ConfigDict(meta["config"])
    if config.trainer != "stic":
      raise UserError(f"{workdir} holds a {config.trainer!r} model, not a "
                      "STIC classifier.")
    model = stic.SynthesizeItClassifier(config, parallel.make_mesh(),
                                        shapes=meta["shapes"])
    items = checkpoints.restore(
        round_index, model.restore_targets(meta))
  finally:
    checkpoints.close()
  params = {v: p["params"] for v, p in items["variants"].items()}
  return model, params, items["references"]["images"], round_index


def load_networks(workdir, round_index=None):
  """(config, {name: (flax module, params)}, input shape (H, W, C), round):
  the networks of any saved critic or classifier, for evaluators that read
  their convolutions (the semi-supervised protocol). A cascade gives its
  last trained critic; ICL and STIC every variant. ICL reads its training
  data to rebuild the run."""
  trainer = saved_trainer(workdir)
  if trainer in sampling_members():
    model, cascade, round_index = load_model(workdir, round_index)
    last = int(cascade.count) - 1
    shape = (model.patch, model.patch, model.canvas_shape[2])
    return (model.config, {f"critic{last}": (
        model.critic, cascade_lib.critic(cascade, last))}, shape, round_index)
  if trainer == "stic":
    model, params, _, round_index = load_classifier(workdir, round_index)
    return (model.config, {v: (model.network, p) for v, p in params.items()},
            tuple(model.image_shape), round_index)
  if trainer == "icl":
    checkpoints = ckpt_lib.Checkpointer(workdir)
    try:
      round_index, meta = _latest_meta(checkpoints, workdir, round_index)
      config = ml_collections.ConfigDict(meta["config"])
      if config.icl.mode == "one_vs_all":
        raise UserError(f"{workdir} holds one_vs_all classifiers (K "
                        "networks each); evaluate a softmax or binary run.")
      model = icl.IntrospectiveClassifier(config, parallel.make_mesh())
      items = checkpoints.restore(round_index, model.restore_targets(meta))
    finally:
      checkpoints.close()
    return (config, {v: (model.heads.network, p["params"])
                     for v, p in items["variants"].items()},
            tuple(model.image_shape), round_index)
  raise UserError(f"{workdir} holds a {trainer!r} model, which has no critic "
                  "or classifier to read features from.")
