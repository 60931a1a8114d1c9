r"""Throughput benchmarks, next to a PyTorch eager reference of the same loop.

    python -m introjax.bench --workload=synthesis --batch=100
    python -m introjax.bench --workload=synthesis,cascade --batch=100,1024,8192 \
        --precision=fp32,bf16 --backend=both --json=bench.json
    python -m introjax.bench --workload=classifier,class_synthesis \
        --mode=softmax,one_vs_all --classes=10 --batch=100

Prints one table with a row per (workload, mode, batch, precision, backend)
and writes the same rows as JSON (`--json`). Each workload has its own input
unless `--patch`/`--channels` say otherwise: textures 64×64×3, digits
28×28×1.

`synthesis`: gradient ascent on the input through IGM's texture critic
(DCGAN, 5×5 stride-2 convs 64-128-256-512, LayerNorm, LeakyReLU 0.2), Adam
lr 0.1 β1 0.5, `--steps` steps over `--batch` patches. JAX runs the whole
ascent as one compiled while-loop; the reference does what the papers' code
does: a Python loop of eager steps with the early-stop check on the host
every step. Unit: sample-steps/s (samples × steps per second).

`cascade`: IGM's generation: the batch climbs each of `--critics` texture
critics in turn, `--steps` steps each (JAX: a `scan` over the stacked
critics' parameters, as `TextureTrainer._generate_fn` does; the reference:
a Python loop over the critics). Unit: sample-steps/s over all critics.

`classifier`: ICL's classification step: SGD (momentum 0.9) on softmax
cross-entropy through ICL §4.1's network (5×5 stride-2 convs, `--features`,
LeakyReLU, no norm) on a resident batch; images/s.

`class_synthesis`: ICL's synthesis step: `--batch` pseudo-negatives split
evenly over `--classes` classes climb their own class logit (Adam lr 0.01
β1 0.5) through the softmax network, or through K one-vs-all critics
(`--mode=one_vs_all`: vmapped in JAX; in the reference a Python loop over the
K critics, as K separately trained networks are run); sample-steps/s.

`grmala`: STIC's synthesis step: `--batch` chains through ICL's network
with K + 1 outputs (the fake class), each climbing log p(y|x) of its class
less the relative Gram distance of the first two convolutions' outputs to a
reference image's (STIC eq. 3, MALA-approx: ε1 = 0.1, ε3 = 0.01); the
reference is JEM-style eager PyTorch (forward hooks for the feature maps,
per-step autograd); sample-steps/s.

`stic_classifier`: STIC's classification step: Adam on the vrm loss (soft-
target cross-entropy over K + 1 classes) of `--batch` real images, as many
mixup images of them and as many fakes (3 × batch rows a step); real
images/s (the batch, as the paper counts its batch of 50).

`introvae`: IntroVAE's training iteration (Algorithm 1: the E update, then
the G update through the updated encoder, two Adams) on `--patch`² RGB
images (default 64; 128 …), batch 8 by default (§4.1), with
configs/introvae_celeba.py:<patch>'s network (Appendix B widths, or
`--features` for other widths; latent, m, α, β of that size, 64²'s for
sizes the config has not). JAX runs `--steps` iterations as the trainer's
compiled round (`IntroVAETrainer.round_fn`, one `scan`); the reference is
introjax/torch_introvae.py, the same networks in eager PyTorch with the
official code's losses, the same forward/backward passes and our initial
weights; training images/s.

Precisions: `fp32`; `bf16` computes in bfloat16 while parameters, optimiser
state and the synthesized images stay float32 (JAX: the models' `dtype`;
PyTorch: `torch.autocast(..., dtype=torch.bfloat16)`).

Columns (BENCHMARKS.md says more): throughput is the median of `--repeats`
timed runs after a warm-up run; `compile s` is JAX's lower+compile time;
`peak mem` is the device's peak bytes in use during the row where the device
reports it (`dev`), else XLA's buffer assignment for the compiled program,
arguments + outputs + temporaries (`xla`); `GFLOP/s` is XLA's FLOP count of
one step (`cost_analysis`) × steps / time, for either backend (the same
work); `% peak` divides it by the chip's dense peak for the precision;
`jax/torch` is the throughput ratio of the two rows of the same run.
"""
import dataclasses
import json
import os
import statistics
import time

from absl import app
from absl import flags

from introjax import paths

WORKLOADS = ("synthesis", "cascade", "classifier", "class_synthesis",
             "grmala", "stic_classifier", "introvae")
PRECISIONS = ("fp32", "bf16")
MODES = ("softmax", "one_vs_all")

_WORKLOAD = flags.DEFINE_list(
    "workload", ["synthesis"], f"What to time, any of {', '.join(WORKLOADS)}.")
_MODE = flags.DEFINE_list("mode", ["softmax"],
                          "class_synthesis: softmax and/or one_vs_all.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Classes (classifier work).")
_CRITICS = flags.DEFINE_integer("critics", 4, "cascade: critics climbed.")
_BACKEND = flags.DEFINE_enum("backend", "both", ["jax", "torch", "both"],
                             "Which implementation(s).")
_BATCH = flags.DEFINE_list("batch", None, "Batch sizes, e.g. 100,1024,8192 "
                           "(default 100; introvae: 8, as §4.1).")
_PRECISION = flags.DEFINE_list("precision", ["fp32"],
                               "Compute precisions: fp32 and/or bf16.")
_PATCH = flags.DEFINE_integer(
    "patch", None, "Side of each sample (default: 64 for the texture "
    "workloads, 28 for the classifier ones).")
_CHANNELS = flags.DEFINE_integer(
    "channels", None, "Channels of each sample (default: 3 textures, 1 "
    "classifier).")
_FEATURES = flags.DEFINE_list(
    "features", None, "Network widths (default 64,128,256,512; introvae: "
    "Appendix B's widths for --patch).")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs (median reported).")
_JSON = flags.DEFINE_string("json", None, "Also write the rows here.")

LEARNING_RATE, B1, B2, EPS = 0.1, 0.5, 0.999, 1e-8
CLASS_LEARNING_RATE = 0.01
_INPUTS = {"synthesis": (64, 3), "cascade": (64, 3), "classifier": (28, 1),
           "class_synthesis": (28, 1), "grmala": (28, 1),
           "stic_classifier": (28, 1), "introvae": (64, 3)}
_UNITS = {"synthesis": "sample-steps/s", "cascade": "sample-steps/s",
          "classifier": "images/s", "class_synthesis": "sample-steps/s",
          "grmala": "sample-steps/s", "stic_classifier": "images/s",
          "introvae": "images/s"}
FEATURES = (64, 128, 256, 512)
DEFAULT_BATCH = {"introvae": 8}   # §4.1; every other workload: 100
GRMALA_STEP, GRMALA_NOISE, GRAM_WEIGHT = 0.1, 0.01, 3.0

# Dense (no sparsity) peak FLOP/s per chip by `device.device_kind`, matched
# by lower-case substring, most specific first. fp32 on NVIDIA is the TF32
# tensor-core rate: cuDNN (PyTorch's default for convolutions) and XLA's
# default precision run float32 convolutions in TF32 there. TPUs publish no
# float32 peak (XLA's default precision runs float32 matmuls as bf16 passes).
# Sources: NVIDIA H100 datasheet (SXM 989.4 / 494.7 TFLOPS bf16 / tf32,
# PCIe 756 / 378), H200 datasheet (SXM, same as H100 SXM), A100 datasheet
# (312 / 156); Google Cloud TPU system-architecture pages
# (cloud.google.com/tpu/docs/v4, v5e, v5p, v6e: 275, 197, 459, 918 TFLOPS
# bf16 per chip).
PEAK_FLOPS = (
    ("h100 pcie", {"bf16": 756e12, "fp32": 378e12}),
    ("h100", {"bf16": 989.4e12, "fp32": 494.7e12}),
    ("h200", {"bf16": 989.4e12, "fp32": 494.7e12}),
    ("a100", {"bf16": 312e12, "fp32": 156e12}),
    ("tpu v4", {"bf16": 275e12}),
    ("tpu v5 lite", {"bf16": 197e12}),
    ("tpu v5e", {"bf16": 197e12}),
    ("tpu v5p", {"bf16": 459e12}),
    ("tpu v5", {"bf16": 459e12}),
    ("tpu v6 lite", {"bf16": 918e12}),
    ("tpu v6e", {"bf16": 918e12}),
)


def peak_flops(device_kind, precision):
  """The chip's dense peak FLOP/s for `precision`, or None if not known."""
  kind = device_kind.lower()
  for name, peaks in PEAK_FLOPS:
    if name in kind:
      return peaks.get(precision)
  return None


@dataclasses.dataclass(frozen=True)
class Spec:
  """One row's work."""
  workload: str
  batch: int
  precision: str
  patch: int
  channels: int
  features: tuple
  steps: int
  classes: int = 10
  mode: str = ""
  critics: int = 1

  @property
  def work(self):
    """Units of work (sample-steps or images) of one timed run."""
    return self.batch * self.steps * self.critics

  @property
  def compute_dtype(self):
    """The models' `dtype` for this precision."""
    from introjax.models.layers import compute_dtype
    return compute_dtype("bfloat16" if self.precision == "bf16" else "float32")


def _median_time(fn, repeats):
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


# JAX -------------------------------------------------------------------------
# Each builder returns (program, args, one_step, one_step_args, steps): the
# timed program, and one step of it whose XLA FLOP count × steps is the
# program's work (XLA counts a while loop's body once, whatever its trip
# count, so the whole program's count would be wrong).


def _ascent_settings(learning_rate, steps):
  from introjax.sampling.ascent import AscentSettings
  return AscentSettings(learning_rate=learning_rate, b1=B1, b2=B2,
                        max_steps=steps, clip=1.0)


def _jax_texture_critic(spec):
  from introjax.models.critics import DCGANCritic, init_critic
  critic = DCGANCritic(features=spec.features, dtype=spec.compute_dtype)
  init = lambda key: init_critic(critic, key, (spec.patch, spec.patch,
                                               spec.channels))
  return critic, init


def _jax_inputs(spec):
  import jax
  return 0.3 * jax.random.normal(
      jax.random.PRNGKey(1), (spec.batch, spec.patch, spec.patch,
                              spec.channels))


def _texture_climb(critic, steps):
  """`params, x0, key -> (x, stats)`: `steps` ascent steps through one
  texture critic."""
  from introjax.sampling.ascent import ascend
  from introjax.sampling.scores import logit_ascent
  from introjax.sampling.stopping import FixedSteps
  settings = _ascent_settings(LEARNING_RATE, steps)

  def climb(params, x0, key):
    logits = lambda x: critic.apply({"params": params}, x)
    return ascend(logit_ascent(logits), x0, key, FixedSteps(), settings)
  return climb


def _jax_synthesis(spec):
  import jax
  critic, init = _jax_texture_critic(spec)
  args = (init(jax.random.PRNGKey(0)), _jax_inputs(spec),
          jax.random.PRNGKey(2))
  return (_texture_climb(critic, spec.steps), args,
          _texture_climb(critic, 1), args, spec.steps)


def _jax_cascade(spec):
  import jax
  from introjax import generation
  critic, init = _jax_texture_critic(spec)
  cascade = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(0),
                                            spec.critics))
  climb = _texture_climb(critic, spec.steps)

  def generate(cascade, x0, key):
    # IGM's generation: x climbs each critic of the stacked cascade in turn.
    return generation.through_cascade(
        cascade, spec.critics, x0, key,
        lambda x, params, key: climb(params, x, key))[0]

  one_step = lambda params, x, key: _texture_climb(critic, 1)(params, x,
                                                              key)[0]
  x0, key = _jax_inputs(spec), jax.random.PRNGKey(2)
  first = jax.tree.map(lambda p: p[0], cascade)
  return (generate, (cascade, x0, key), one_step, (first, x0, key),
          spec.steps * spec.critics)


def _jax_classifier(spec):
  import jax
  import optax
  from introjax.models.classifiers import ICLConvNet, init_classifier
  net = ICLConvNet(num_outputs=spec.classes, features=spec.features,
                   dtype=spec.compute_dtype)
  params = init_classifier(net, jax.random.PRNGKey(0),
                           (spec.patch, spec.patch, spec.channels))
  tx = optax.sgd(0.01, momentum=0.9)
  x = jax.random.normal(jax.random.PRNGKey(1),
                        (spec.batch, spec.patch, spec.patch, spec.channels))
  y = jax.random.randint(jax.random.PRNGKey(2), (spec.batch,), 0,
                         spec.classes)

  def step(params, opt_state, x, y):
    grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        net.apply({"params": p}, x), y).mean())(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def train(params, opt_state, x, y):
    return jax.lax.fori_loop(
        0, spec.steps, lambda _, c: step(*c, x, y), (params, opt_state))

  args = (params, tx.init(params), x, y)
  return train, args, step, args, spec.steps


def _jax_class_synthesis(spec):
  import jax
  import ml_collections
  from introjax.models.heads import ClassifierHeads
  from introjax.sampling.ascent import ascend
  from introjax.sampling.scores import logit_ascent
  from introjax.sampling.stopping import FixedSteps
  model = ml_collections.ConfigDict(dict(name="icl_conv", kernel_size=5,
                                         features=spec.features))
  heads = ClassifierHeads(spec.mode, model, spec.classes, spec.compute_dtype)
  params = heads.init(jax.random.PRNGKey(0),
                      (spec.patch, spec.patch, spec.channels))

  def program(steps):
    settings = _ascent_settings(CLASS_LEARNING_RATE, steps)
    def synthesize(params, x0, key):
      own = lambda x: heads.own_logit(params, x)
      return ascend(logit_ascent(own), x0, key, FixedSteps(), settings)
    return synthesize

  args = (params, _jax_inputs(spec), jax.random.PRNGKey(2))
  return program(spec.steps), args, program(1), args, spec.steps


def _jax_stic_net(spec):
  import jax
  from introjax.models.classifiers import ICLConvNet, init_classifier
  net = ICLConvNet(num_outputs=spec.classes + 1, features=spec.features,
                   dtype=spec.compute_dtype)
  return net, init_classifier(net, jax.random.PRNGKey(0),
                              (spec.patch, spec.patch, spec.channels))


def _jax_grmala(spec):
  import jax
  import jax.numpy as jnp
  from introjax.models import classifiers
  from introjax.sampling import scores
  from introjax.sampling.ascent import AscentSettings, ascend
  from introjax.sampling.stopping import FixedSteps
  net, params = _jax_stic_net(spec)
  taps = classifiers.feature_taps(net, ("conv0", "conv1"))
  x0 = _jax_inputs(spec)
  references = jnp.flip(x0, axis=0)
  targets = jax.nn.one_hot(jnp.arange(spec.batch) % spec.classes,
                           spec.classes + 1)

  def program(steps):
    settings = AscentSettings(optimizer="grmala", learning_rate=GRMALA_STEP,
                              proposal_noise=GRMALA_NOISE, max_steps=steps,
                              clip=1.0)
    def synthesize(params, grams, x0, key):
      t = lambda x: taps(params, x)
      score = scores.gram_regularised(t, targets, grams, GRAM_WEIGHT)
      return ascend(score, x0, key, FixedSteps(), settings)
    return synthesize

  # The references' Gram matrices are made once, outside the timed
  # program, as the PyTorch loop makes them (and as a STIC pass does).
  grams = jax.jit(lambda params: [
      scores.gram_matrix(f) for f in taps(params, references)[1]])(params)
  args = (params, grams, x0, jax.random.PRNGKey(2))
  return program(spec.steps), args, program(1), args, spec.steps


def _jax_stic_classifier(spec):
  import jax
  import jax.numpy as jnp
  import optax
  from introjax.objectives import vrm
  net, params = _jax_stic_net(spec)
  tx = optax.adam(1e-3)
  k, b = spec.classes, spec.batch
  shape = (b, spec.patch, spec.patch, spec.channels)
  real = jax.random.uniform(jax.random.PRNGKey(1), shape, minval=-1)
  fakes = jax.random.uniform(jax.random.PRNGKey(3), shape, minval=-1)
  labels = jax.random.randint(jax.random.PRNGKey(2), (b,), 0, k)
  loss = vrm.VRMFakeClassLoss(k)
  weight = vrm.group_weights((b, b, b), (True, True, True))

  def step(params, opt_state, key):
    def objective(p):
      targets = jax.nn.one_hot(labels, k + 1)
      mixed, mixed_targets, _ = vrm.mixup(key, real, targets, 1.0)
      batch = {"x": jnp.concatenate([real, mixed, fakes]),
               "targets": jnp.concatenate([
                   targets, mixed_targets,
                   jax.nn.one_hot(jnp.full((b,), k), k + 1)]),
               "weight": weight,
               "labels": jnp.concatenate([labels, jnp.full((2 * b,), -1)])}
      return loss(lambda x: net.apply({"params": p}, x), batch, key)[0]
    grads = jax.grad(objective)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def train(params, opt_state, key):
    return jax.lax.fori_loop(
        0, spec.steps,
        lambda i, c: step(*c, jax.random.fold_in(key, i)), (params, opt_state))

  args = (params, tx.init(params), jax.random.PRNGKey(4))
  return train, args, step, args, spec.steps


_INTROVAE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "introvae_celeba.py")


def _introvae_celeba():
  """configs/introvae_celeba.py as a module (its SETTINGS and get_config)."""
  import importlib.util
  module_spec = importlib.util.spec_from_file_location("_introvae_celeba",
                                                       _INTROVAE_CONFIG)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def introvae_config(spec):
  """configs/introvae_celeba.py:<patch> (64's settings for other sizes)
  with the spec's widths, batch, channels and precision."""
  celeba = _introvae_celeba()
  c = celeba.get_config(str(spec.patch if spec.patch in celeba.SETTINGS
                            else 64))
  c.data.image_size, c.data.channels = spec.patch, spec.channels
  c.model.channels = tuple(spec.features)
  c.train.batch_size, c.train.epochs_per_round = spec.batch, 1
  c.dtype = "bfloat16" if spec.precision == "bf16" else "float32"
  return c


def introvae_trainer(spec):
  """(trainer, its initial state, the training images (N, S, S, C) uint8):
  `spec.steps` batches' worth of random images, so that one round is
  `spec.steps` iterations."""
  import numpy as np
  from introjax.training.introvae import IntroVAETrainer
  images = np.random.default_rng(1).integers(
      0, 256, (spec.steps * spec.batch, spec.patch, spec.patch,
               spec.channels), dtype=np.uint8)
  trainer = IntroVAETrainer(introvae_config(spec), images=images)
  return trainer, trainer.init_state(), images


def _jax_introvae(spec):
  import jax
  import jax.numpy as jnp
  trainer, state, _ = introvae_trainer(spec)
  iv = trainer.config.introvae
  args = (state, trainer.images, jax.random.PRNGKey(2), jnp.float32(iv.alpha),
          jnp.float32(float(iv.margin)))

  def one_step(state, images, key, alpha, margin):
    carry = (state.encoder, state.generator, state.opt_e, state.opt_g)
    return trainer.step(carry, key, images, alpha, margin)
  return trainer.round_fn, args, one_step, args, spec.steps


_JAX_BUILDERS = {"synthesis": _jax_synthesis, "cascade": _jax_cascade,
                 "classifier": _jax_classifier,
                 "class_synthesis": _jax_class_synthesis,
                 "grmala": _jax_grmala,
                 "stic_classifier": _jax_stic_classifier,
                 "introvae": _jax_introvae}


def _flops(compiled):
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _xla_bytes(compiled):
  """Arguments + outputs + temporaries of XLA's buffer assignment."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes
          + stats.temp_size_in_bytes)


def _device_peak(device):
  stats = device.memory_stats()
  return stats.get("peak_bytes_in_use") if stats else None


def _run_flops(one_step, step_args, steps):
  """XLA's FLOP count of one timed run: one step's × steps."""
  import jax
  flops = _flops(jax.jit(one_step).lower(*step_args).compile())
  return flops * steps if flops is not None else None


def bench_jax(spec, repeats):
  """Times `spec` in JAX; the row's measured fields, with the XLA FLOP count
  of one timed run (which the PyTorch row of the same work reuses)."""
  import jax
  device = jax.devices()[0]
  program, args, one_step, step_args, steps = _JAX_BUILDERS[spec.workload](
      spec)
  peak_before = _device_peak(device)
  start = time.perf_counter()
  compiled = jax.jit(program).lower(*args).compile()
  compile_s = time.perf_counter() - start
  flops = _run_flops(one_step, step_args, steps)
  run = lambda: jax.block_until_ready(compiled(*args))
  seconds = _median_time(run, repeats)
  # The device's peak is a high-water mark over the process: it belongs to
  # this row only if this row raised it.
  peak_after = _device_peak(device)
  if peak_after is not None and (peak_before is None
                                 or peak_after > peak_before):
    memory, source = peak_after, "dev"
  else:
    memory, source = _xla_bytes(compiled), "xla"
  return dict(backend="jax", device=device.device_kind,
              platform=device.platform, seconds=seconds,
              compile_seconds=compile_s, peak_memory_bytes=memory,
              memory_source=source, xla_memory_bytes=_xla_bytes(compiled),
              flops_per_run=flops)


# PyTorch eager reference -------------------------------------------------------


def _torch_device():
  import torch
  return "cuda" if torch.cuda.is_available() else "cpu"


def _autocast(spec, device):
  import torch
  return torch.autocast(device_type=device, dtype=torch.bfloat16,
                        enabled=spec.precision == "bf16")


def _torch_ascent(logits_fn, x0, steps, learning_rate, autocast=None):
  """The papers' synthesis loop in PyTorch eager: per-step autograd, Adam on
  the pixels, the early-stop check on the host every step. `autocast` wraps
  the network (the pixels and Adam stay float32)."""
  import contextlib
  import torch
  x = x0.clone()
  m, v = torch.zeros_like(x), torch.zeros_like(x)
  running = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
  for t in range(1, steps + 1):
    x.requires_grad_(True)
    with autocast or contextlib.nullcontext():
      score = logits_fn(x).float().sum()
    grad, = torch.autograd.grad(score, x)
    x = x.detach()
    if not bool(running.any()):  # the host-side early-stop check
      break
    m = B1 * m + (1 - B1) * grad
    v = B2 * v + (1 - B2) * grad * grad
    update = learning_rate * (m / (1 - B1 ** t)) / (
        torch.sqrt(v / (1 - B2 ** t)) + EPS)
    x = torch.where(running[:, None, None, None],
                    torch.clamp(x + update, -1, 1), x)
  return x


def _torch_texture_critic(spec, device):
  from torch import nn
  layers, c, size = [], spec.channels, spec.patch
  for i, f in enumerate(spec.features):
    layers.append(nn.Conv2d(c, f, 5, stride=2, padding=2))
    size = (size + 1) // 2
    if i > 0:
      layers.append(nn.LayerNorm([f, size, size]))
    layers.append(nn.LeakyReLU(0.2))
    c = f
  net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * size * size, 1))
  return _frozen(net.to(device))


def _frozen(net):
  for p in net.parameters():
    p.requires_grad_(False)
  return net


def _torch_inputs(spec, device):
  import torch
  gen = torch.Generator().manual_seed(1)
  return 0.3 * torch.randn(spec.batch, spec.channels, spec.patch, spec.patch,
                           generator=gen).to(device)


def _torch_synthesis(spec, device):
  net = _torch_texture_critic(spec, device)
  x0 = _torch_inputs(spec, device)
  return lambda: _torch_ascent(lambda x: net(x)[:, 0], x0, spec.steps,
                               LEARNING_RATE, _autocast(spec, device))


def _torch_cascade(spec, device):
  nets = [_torch_texture_critic(spec, device) for _ in range(spec.critics)]
  x0 = _torch_inputs(spec, device)

  def run():
    x = x0
    for net in nets:
      x = _torch_ascent(lambda x, net=net: net(x)[:, 0], x, spec.steps,
                        LEARNING_RATE, _autocast(spec, device))
    return x
  return run


def _torch_icl_net(spec, outputs, device):
  from torch import nn
  layers, c = [], spec.channels
  for f in spec.features:
    layers += [nn.Conv2d(c, f, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
    c = f
  net = nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(outputs)).to(device)
  net(_torch_inputs(spec, device)[:1])  # materialises the lazy layer
  return net


def _torch_classifier(spec, device):
  import torch
  net = _torch_icl_net(spec, spec.classes, device)
  gen = torch.Generator().manual_seed(1)
  x = torch.randn(spec.batch, spec.channels, spec.patch, spec.patch,
                  generator=gen).to(device)
  y = torch.randint(0, spec.classes, (spec.batch,), generator=gen).to(device)
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

  def run():
    for _ in range(spec.steps):
      opt.zero_grad()
      with _autocast(spec, device):
        loss = torch.nn.functional.cross_entropy(net(x).float(), y)
      loss.backward()
      opt.step()
  return run


def _torch_class_synthesis(spec, device):
  import torch
  per_class = spec.batch // spec.classes
  x0 = _torch_inputs(spec, device)
  one_vs_all = spec.mode == "one_vs_all"
  nets = [_frozen(_torch_icl_net(spec, 1 if one_vs_all else spec.classes,
                                 device))
          for _ in range(spec.classes if one_vs_all else 1)]
  own = torch.arange(spec.classes, device=device).repeat_interleave(per_class)

  def own_logits(x):
    if one_vs_all:  # K separately trained critics, one by one
      return torch.cat([nets[k](x[k * per_class:(k + 1) * per_class])[:, 0]
                        for k in range(spec.classes)])
    return nets[0](x).gather(1, own[:, None])[:, 0]

  return lambda: _torch_ascent(own_logits, x0, spec.steps,
                               CLASS_LEARNING_RATE, _autocast(spec, device))


def _torch_gram(f):
  b, c = f.shape[:2]
  f = f.reshape(b, c, -1)
  return f @ f.transpose(1, 2) / f.shape[-1]


def _torch_grmala(spec, device):
  import torch
  net = _frozen(_torch_icl_net(spec, spec.classes + 1, device))
  taps = []
  for conv in [m for m in net if isinstance(m, torch.nn.Conv2d)][:2]:
    conv.register_forward_hook(lambda m, i, out: taps.append(out))
  x0 = _torch_inputs(spec, device)
  references = torch.flip(x0, dims=(0,))
  labels = torch.arange(spec.batch, device=device) % spec.classes
  with torch.no_grad():
    taps.clear()
    net(references)
    grams = [_torch_gram(f) for f in taps]

  def run():   # JEM's loop: autograd each step, the update in eager ops
    x = x0.clone()
    for _ in range(spec.steps):
      x.requires_grad_(True)
      taps.clear()
      with _autocast(spec, device):
        logits = net(x).float()
      log_p = torch.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0]
      distance = sum(((_torch_gram(f.float()) - a) ** 2).sum((1, 2)) /
                     (a ** 2).sum((1, 2)) for f, a in zip(taps, grams))
      grad, = torch.autograd.grad((log_p - GRAM_WEIGHT * distance).sum(), x)
      x = torch.clamp(x.detach() + GRMALA_STEP * grad +
                      GRMALA_NOISE * torch.randn_like(x), -1, 1)
    return x
  return run


def _torch_stic_classifier(spec, device):
  import torch
  net = _torch_icl_net(spec, spec.classes + 1, device)
  gen = torch.Generator().manual_seed(1)
  k, b = spec.classes, spec.batch
  shape = (b, spec.channels, spec.patch, spec.patch)
  real = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
  fakes = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
  labels = torch.randint(0, k, (b,), generator=gen).to(device)
  targets = torch.nn.functional.one_hot(labels, k + 1).float()
  fake_targets = torch.nn.functional.one_hot(
      torch.full((b,), k, device=device), k + 1).float()
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)

  def run():
    for _ in range(spec.steps):
      opt.zero_grad()
      perm = torch.randperm(b, device=device)
      lam = torch.distributions.Beta(1.0, 1.0).sample((b,)).to(device)
      mixed = lam[:, None, None, None] * real + (
          1 - lam[:, None, None, None]) * real[perm]
      mixed_targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]
      with _autocast(spec, device):
        logits = net(torch.cat([real, mixed, fakes])).float()
      log_p = torch.log_softmax(logits, 1)
      loss = sum(-(t * lp).sum(1).mean() for t, lp in zip(
          (targets, mixed_targets, fake_targets), log_p.split(b)))
      loss.backward()
      opt.step()
  return run


def _torch_introvae(spec, device):
  import contextlib
  import torch
  from introjax import torch_introvae as ref
  trainer, state, images = introvae_trainer(spec)
  c = trainer.config
  encoder = ref.Encoder(c.model.channels, c.model.latent_dim, spec.channels)
  generator = ref.Generator(c.model.channels, c.model.latent_dim,
                            spec.channels)
  ref.load_flax_params(encoder, generator, state.encoder, state.generator)
  encoder, generator = encoder.to(device), generator.to(device)
  step = ref.IntroVAEStep(encoder, generator, c.introvae.alpha,
                          c.introvae.beta, float(c.introvae.margin),
                          c.train.learning_rate, (c.train.b1, c.train.b2))
  images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
  autocast = (_autocast(spec, device) if spec.precision == "bf16"
              else contextlib.nullcontext())

  def run():
    with autocast:
      return ref.training_loop(step, images, c.model.latent_dim, spec.batch,
                               spec.steps)
  return run


_TORCH_BUILDERS = {"synthesis": _torch_synthesis, "cascade": _torch_cascade,
                   "classifier": _torch_classifier,
                   "class_synthesis": _torch_class_synthesis,
                   "grmala": _torch_grmala,
                   "stic_classifier": _torch_stic_classifier,
                   "introvae": _torch_introvae}


def bench_torch(spec, repeats):
  import torch
  device = _torch_device()
  torch.set_num_threads(_cpus())
  run = _TORCH_BUILDERS[spec.workload](spec, device)
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    timed = lambda: (run(), torch.cuda.synchronize())
    name = torch.cuda.get_device_name()
  else:
    timed, name = run, "cpu"
  seconds = _median_time(timed, repeats)
  memory = torch.cuda.max_memory_allocated() if device == "cuda" else None
  if device == "cuda":
    torch.cuda.empty_cache()  # hand the cache back before the next JAX row
  return dict(backend="torch-eager", device=name, platform=device,
              seconds=seconds, compile_seconds=None, peak_memory_bytes=memory,
              memory_source="dev" if memory is not None else None)


def _cpus():
  """Cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


# The table ---------------------------------------------------------------------


def _default_features(workload, patch):
  if workload != "introvae":
    return FEATURES
  from introjax.models import introvae as nets
  sizes = {nets.resolution(settings[0]): settings[0]
           for settings in _introvae_celeba().SETTINGS.values()}
  if patch not in sizes:
    raise app.UsageError(
        f"introvae has no default network for --patch={patch}; use one of "
        f"{', '.join(map(str, sorted(sizes)))} or give --features (one width "
        "per halving, 4·2^len = patch).")
  return tuple(sizes[patch])


def _specs(workloads, modes, batches, precisions, args):
  specs = []
  for workload in workloads:
    patch, channels = _INPUTS[workload]
    patch = args["patch"] or patch
    channels = args["channels"] or channels
    features = args["features"] or _default_features(workload, patch)
    for mode in (modes if workload == "class_synthesis" else [""]):
      # Ascending batches: the device's peak memory is a high-water mark.
      for batch in sorted(batches or [DEFAULT_BATCH.get(workload, 100)]):
        for precision in precisions:
          specs.append(Spec(
              workload=workload, batch=batch, precision=precision,
              patch=patch, channels=channels, features=features,
              steps=args["steps"], classes=args["classes"], mode=mode,
              critics=args["critics"] if workload == "cascade" else 1))
  return specs


def _complete(row, spec, flops):
  """Adds the derived columns to a measured row."""
  row.update(dataclasses.asdict(spec))
  row["features"] = list(spec.features)
  row.update(unit=_UNITS[spec.workload], throughput=spec.work / row["seconds"],
             ms_per_step=1e3 * row["seconds"] / (spec.steps * spec.critics))
  row["flops_per_run"] = flops
  row["flops_per_second"] = flops / row["seconds"] if flops else None
  if row["platform"] == "cpu":
    row["peak_flops"] = None
  else:
    row["peak_flops"] = peak_flops(row["device"], spec.precision)
  row["fraction_of_peak"] = (row["flops_per_second"] / row["peak_flops"]
                             if row["peak_flops"] and flops else None)
  row["jax_over_torch"] = None  # set once both rows of the pair exist
  return row


def _fmt(value, spec, missing="n/a"):
  return missing if value is None else format(value, spec)


def format_table(rows):
  header = (f"{'workload':<26} {'batch':>6} {'prec':<4} {'backend':<11} "
            f"{'throughput':>11} {'unit':<14} {'ms/step':>8} {'compile s':>9} "
            f"{'peak mem':>14} {'GFLOP/s':>9} {'% peak':>7} {'jax/torch':>9}")
  lines = [header]
  for r in rows:
    name = r["workload"] + (f" {r['mode']}" if r["mode"] else "") + (
        f" T={r['critics']}" if r["workload"] == "cascade" else "")
    memory = ("n/a" if r["peak_memory_bytes"] is None else
              f"{r['peak_memory_bytes'] / 2**20:.1f} MiB {r['memory_source']}")
    percent = (None if r["fraction_of_peak"] is None
               else 100 * r["fraction_of_peak"])
    gflops = (None if r["flops_per_second"] is None
              else r["flops_per_second"] / 1e9)
    lines.append(
        f"{name:<26} {r['batch']:>6} {r['precision']:<4} {r['backend']:<11} "
        f"{r['throughput']:>11.1f} {r['unit']:<14} {r['ms_per_step']:>8.1f} "
        f"{_fmt(r['compile_seconds'], '.1f'):>9} {memory:>14} "
        f"{_fmt(gflops, '.4g'):>9} {_fmt(percent, '.2f'):>7} "
        f"{_fmt(r.get('jax_over_torch'), '.2f'):>9}")
  return "\n".join(lines)


def _parse(values, allowed, flag):
  for value in values:
    if value not in allowed:
      raise app.UsageError(f"Unknown --{flag}={value}; use any of "
                           f"{', '.join(allowed)}.")
  return values


def run(workloads, modes=("softmax",), batches=None, precisions=("fp32",),
        backend="both", repeats=3, steps=20, features=None,
        classes=10, critics=4, patch=None, channels=None, json_path=None):
  """The benchmark without the command line: times every (workload, mode,
  batch, precision) on `backend` ("jax", "torch" or "both"), printing the
  table as rows finish; returns the rows (also written to `json_path`).
  The arguments are the flags of the same names (`batches`: --batch;
  None: each workload's default batch and widths)."""
  workloads = _parse(workloads, WORKLOADS, "workload")
  modes = _parse(modes, MODES, "mode")
  precisions = _parse(precisions, PRECISIONS, "precision")
  try:
    batches = [int(b) for b in batches] if batches else None
  except ValueError:
    raise app.UsageError(f"--batch={','.join(map(str, batches))} must be "
                         "whole numbers, e.g. --batch=100,1024.") from None
  if "class_synthesis" in workloads and any(b % classes for b in
                                            batches or [100]):
    raise app.UsageError("class_synthesis splits the batch over the "
                         f"classes: give --batch multiples of --classes="
                         f"{classes}.")
  specs = _specs(workloads, modes, batches, precisions, dict(
      patch=patch, channels=channels,
      features=tuple(int(f) for f in features) if features else None,
      steps=steps,
      classes=classes, critics=critics))
  use_torch = backend in ("torch", "both")
  if use_torch:
    try:
      import torch  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      print("PyTorch is not installed (pip install -e '.[bench]'); "
            "skipping the reference.")
      use_torch = False
  print(f"{_cpus()} CPU cores; {steps} steps per run, median of "
        f"{repeats} runs; network {list(specs[0].features)}")
  print(format_table([]), flush=True)
  rows = []
  for spec in specs:
    jax_row = bench_jax(spec, repeats) if backend != "torch" else None
    flops = jax_row["flops_per_run"] if jax_row else _jax_flops_only(spec)
    pair = []
    if jax_row:
      pair.append(_complete(jax_row, spec, flops))
    if use_torch:
      pair.append(_complete(bench_torch(spec, repeats), spec, flops))
    if len(pair) == 2:
      for r in pair:
        r["jax_over_torch"] = pair[0]["throughput"] / pair[1]["throughput"]
    rows += pair
    print("\n".join(format_table(pair).splitlines()[1:]), flush=True)
  if json_path:
    paths.write_text(json_path, json.dumps(rows, indent=1))
  return rows


def main(argv):
  del argv
  # Allocate on demand, so that the PyTorch rows of the same process get the
  # memory they need and the device's peak means what this run used.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  run(workloads=_WORKLOAD.value, modes=_MODE.value, batches=_BATCH.value,
      precisions=_PRECISION.value, backend=_BACKEND.value,
      repeats=_REPEATS.value, steps=_STEPS.value, features=_FEATURES.value,
      classes=_CLASSES.value, critics=_CRITICS.value, patch=_PATCH.value,
      channels=_CHANNELS.value, json_path=_JSON.value)


def _jax_flops_only(spec):
  """XLA's FLOP count of one run of `spec`, without timing JAX."""
  return _run_flops(*_JAX_BUILDERS[spec.workload](spec)[2:])


if __name__ == "__main__":
  app.run(main)
