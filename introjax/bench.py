r"""Throughput benchmarks, next to a PyTorch eager reference of the same loop.

    python -m introjax.bench --workload=synthesis
    python -m introjax.bench --workload=synthesis --batch=100 --patch=64 \
        --steps=20 --backend=both --json=bench.json
    python -m introjax.bench --workload=classifier --batch=64 --patch=28 \
        --channels=1 --steps=50
    python -m introjax.bench --workload=class_synthesis --mode=one_vs_all \
        --batch=100 --patch=28 --channels=1 --classes=10

`synthesis`: gradient ascent on the input through IGM's texture critic
(DCGAN, 5×5 stride-2 convs 64-128-256-512, LayerNorm, LeakyReLU 0.2), Adam
lr 0.1 β1 0.5, `--steps` steps over a batch of `--batch` patches of
`--patch`² pixels. JAX runs the whole ascent as one compiled while-loop; the
reference does what the papers' code does: a Python loop of eager steps with
the early-stop check on the host every step. Reported: sample-steps/s
(samples × steps per second), the median of `--repeats` timed runs after a
warm-up run, and JAX's compile time.

`classifier`: ICL's classification step: SGD (momentum 0.9) on softmax
cross-entropy through ICL §4.1's network (5×5 stride-2 convs, `--features`,
LeakyReLU, no norm) on a resident batch; images/s.

`class_synthesis`: ICL's synthesis step: `--batch` pseudo-negatives split
evenly over `--classes` classes climb their own class logit (Adam lr 0.01
β1 0.5) through the softmax network, or through K one-vs-all critics
(`--mode=one_vs_all`: vmapped in JAX; in the reference a Python loop over the
K critics, as K separately trained networks are run); sample-steps/s.
"""
import json
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np

_WORKLOAD = flags.DEFINE_enum(
    "workload", "synthesis", ["synthesis", "classifier", "class_synthesis"],
    "What to time.")
_MODE = flags.DEFINE_enum("mode", "softmax", ["softmax", "one_vs_all"],
                          "class_synthesis: one softmax net or K critics.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Classes (classifier work).")
_BACKEND = flags.DEFINE_enum("backend", "both", ["jax", "torch", "both"],
                             "Which implementation(s).")
_BATCH = flags.DEFINE_integer("batch", 100, "Samples per batch.")
_PATCH = flags.DEFINE_integer("patch", 64, "Side of each sample.")
_CHANNELS = flags.DEFINE_integer("channels", 3, "Channels of each sample.")
_FEATURES = flags.DEFINE_list("features", ["64", "128", "256", "512"],
                              "Critic widths.")
_STEPS = flags.DEFINE_integer("steps", 20, "Ascent steps per run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs (median reported).")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")

LEARNING_RATE, B1, B2, EPS = 0.1, 0.5, 0.999, 1e-8


def _median_time(fn, repeats):
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _torch_ascent(logits_fn, x0, steps, learning_rate):
  """The papers' synthesis loop in PyTorch eager: per-step autograd, Adam on
  the pixels, the early-stop check on the host every step."""
  import torch
  x = x0.clone()
  m, v = torch.zeros_like(x), torch.zeros_like(x)
  running = torch.ones(x.shape[0], dtype=torch.bool)
  for t in range(1, steps + 1):
    x.requires_grad_(True)
    grad, = torch.autograd.grad(logits_fn(x).sum(), x)
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


def bench_jax(batch, patch, channels, features, steps, repeats):
  import jax
  from introjax.models.critics import DCGANCritic, init_critic
  from introjax.sampling.ascent import AscentSettings, ascend, logit_ascent
  from introjax.sampling.stopping import FixedSteps

  critic = DCGANCritic(features=tuple(features))
  params = init_critic(critic, jax.random.PRNGKey(0), (patch, patch, channels))
  x0 = 0.3 * jax.random.normal(jax.random.PRNGKey(1),
                               (batch, patch, patch, channels))
  settings = AscentSettings(learning_rate=LEARNING_RATE, b1=B1, b2=B2,
                            max_steps=steps, clip=1.0)

  @jax.jit
  def synthesize(params, x0, key):
    logits = lambda x: critic.apply({"params": params}, x)
    return ascend(logit_ascent(logits), x0, key, FixedSteps(), settings)

  key = jax.random.PRNGKey(2)
  start = time.perf_counter()
  compiled = synthesize.lower(params, x0, key).compile()
  compile_s = time.perf_counter() - start
  run = lambda: jax.block_until_ready(compiled(params, x0, key))
  seconds = _median_time(run, repeats)
  return {"backend": "jax", "device": str(jax.devices()[0].platform),
          "seconds": seconds, "compile_seconds": compile_s}


def bench_torch(batch, patch, channels, features, steps, repeats):
  import torch
  from torch import nn

  torch.set_num_threads(os.cpu_count() or 1)
  layers, c = [], channels
  size = patch
  for i, f in enumerate(features):
    layers.append(nn.Conv2d(c, f, 5, stride=2, padding=2))
    size = (size + 1) // 2
    if i > 0:
      layers.append(nn.LayerNorm([f, size, size]))
    layers.append(nn.LeakyReLU(0.2))
    c = f
  net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * size * size, 1))
  for p in net.parameters():
    p.requires_grad_(False)
  gen = torch.Generator().manual_seed(1)
  x0 = 0.3 * torch.randn(batch, channels, patch, patch, generator=gen)

  run = lambda: _torch_ascent(lambda x: net(x)[:, 0], x0, steps,
                             LEARNING_RATE)

  seconds = _median_time(run, repeats)
  return {"backend": "torch-eager", "device": "cpu", "seconds": seconds,
          "compile_seconds": 0.0}


# ICL workloads ---------------------------------------------------------------

def _torch_icl_net(channels, features, outputs):
  from torch import nn
  layers, c = [], channels
  for f in features:
    layers += [nn.Conv2d(c, f, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
    c = f
  return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(outputs))


def bench_jax_classifier(batch, patch, channels, features, steps, repeats,
                         classes):
  import jax
  import jax.numpy as jnp
  import optax
  from introjax.models.classifiers import ICLConvNet, init_classifier

  net = ICLConvNet(num_outputs=classes, features=tuple(features))
  params = init_classifier(net, jax.random.PRNGKey(0),
                           (patch, patch, channels))
  tx = optax.sgd(0.01, momentum=0.9)
  x = jax.random.normal(jax.random.PRNGKey(1), (batch, patch, patch, channels))
  y = jax.random.randint(jax.random.PRNGKey(2), (batch,), 0, classes)

  @jax.jit
  def train(params, opt_state):
    def step(_, carry):
      params, opt_state = carry
      grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
          net.apply({"params": p}, x), y).mean())(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state
    return jax.lax.fori_loop(0, steps, step, (params, opt_state))

  opt_state = tx.init(params)
  start = time.perf_counter()
  compiled = train.lower(params, opt_state).compile()
  compile_s = time.perf_counter() - start
  run = lambda: jax.block_until_ready(compiled(params, opt_state))
  return {"backend": "jax", "device": str(jax.devices()[0].platform),
          "seconds": _median_time(run, repeats), "compile_seconds": compile_s}


def bench_torch_classifier(batch, patch, channels, features, steps, repeats,
                           classes):
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  net = _torch_icl_net(channels, features, classes)
  gen = torch.Generator().manual_seed(1)
  x = torch.randn(batch, channels, patch, patch, generator=gen)
  y = torch.randint(0, classes, (batch,), generator=gen)
  net(x)  # materialises the lazy layer
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

  def run():
    for _ in range(steps):
      opt.zero_grad()
      torch.nn.functional.cross_entropy(net(x), y).backward()
      opt.step()

  return {"backend": "torch-eager", "device": "cpu",
          "seconds": _median_time(run, repeats), "compile_seconds": 0.0}


def bench_jax_class_synthesis(batch, patch, channels, features, steps,
                              repeats, classes, mode):
  import jax
  import ml_collections
  from introjax.models.heads import ClassifierHeads
  from introjax.sampling.ascent import AscentSettings, ascend, logit_ascent
  from introjax.sampling.stopping import FixedSteps

  model = ml_collections.ConfigDict(dict(name="icl_conv", kernel_size=5,
                                         features=tuple(features)))
  heads = ClassifierHeads(mode, model, classes)
  params = heads.init(jax.random.PRNGKey(0), (patch, patch, channels))
  x0 = 0.3 * jax.random.normal(jax.random.PRNGKey(1),
                               (batch, patch, patch, channels))
  settings = AscentSettings(learning_rate=0.01, b1=B1, b2=B2,
                            max_steps=steps, clip=1.0)

  @jax.jit
  def synthesize(params, x0, key):
    return ascend(logit_ascent(lambda x: heads.own_logit(params, x)), x0, key,
                  FixedSteps(), settings)

  key = jax.random.PRNGKey(2)
  start = time.perf_counter()
  compiled = synthesize.lower(params, x0, key).compile()
  compile_s = time.perf_counter() - start
  run = lambda: jax.block_until_ready(compiled(params, x0, key))
  return {"backend": "jax", "device": str(jax.devices()[0].platform),
          "seconds": _median_time(run, repeats), "compile_seconds": compile_s}


def bench_torch_class_synthesis(batch, patch, channels, features, steps,
                                repeats, classes, mode):
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  per_class = batch // classes
  gen = torch.Generator().manual_seed(1)
  x0 = 0.3 * torch.randn(batch, channels, patch, patch, generator=gen)
  nets = ([_torch_icl_net(channels, features, 1) for _ in range(classes)]
          if mode == "one_vs_all" else [_torch_icl_net(channels, features,
                                                       classes)])
  for net in nets:
    net(x0[:1])
    for p in net.parameters():
      p.requires_grad_(False)
  own = torch.arange(classes).repeat_interleave(per_class)

  def own_logits(x):
    if mode == "one_vs_all":  # K separately trained critics, one by one
      return torch.cat([nets[k](x[k * per_class:(k + 1) * per_class])[:, 0]
                        for k in range(classes)])
    return nets[0](x).gather(1, own[:, None])[:, 0]

  run = lambda: _torch_ascent(own_logits, x0, steps, 0.01)
  return {"backend": "torch-eager", "device": "cpu",
          "seconds": _median_time(run, repeats), "compile_seconds": 0.0}


_BENCHES = {
    "synthesis": (bench_jax, bench_torch, "sample-steps/s"),
    "classifier": (bench_jax_classifier, bench_torch_classifier, "images/s"),
    "class_synthesis": (bench_jax_class_synthesis,
                        bench_torch_class_synthesis, "sample-steps/s"),
}


def main(argv):
  del argv
  features = [int(f) for f in _FEATURES.value]
  args = (_BATCH.value, _PATCH.value, _CHANNELS.value, features, _STEPS.value,
          _REPEATS.value)
  if _WORKLOAD.value != "synthesis":
    args += (_CLASSES.value,)
  if _WORKLOAD.value == "class_synthesis":
    if _BATCH.value % _CLASSES.value:
      raise app.UsageError("--batch must be a multiple of --classes.")
    args += (_MODE.value,)
  jax_fn, torch_fn, unit = _BENCHES[_WORKLOAD.value]
  results = []
  if _BACKEND.value in ("jax", "both"):
    results.append(jax_fn(*args))
  if _BACKEND.value in ("torch", "both"):
    try:
      results.append(torch_fn(*args))
    except ImportError:
      print("PyTorch is not installed (pip install -e '.[bench]'); "
            "skipping the reference.")
  work = _BATCH.value * _STEPS.value
  for r in results:
    r.update(workload=_WORKLOAD.value, batch=_BATCH.value, patch=_PATCH.value,
             steps=_STEPS.value, features=features, unit=unit,
             throughput=work / r["seconds"],
             ms_per_step=1e3 * r["seconds"] / _STEPS.value)
    if _WORKLOAD.value == "class_synthesis":
      r.update(mode=_MODE.value, classes=_CLASSES.value)
  reference = next((r for r in results if r["backend"] == "torch-eager"), None)
  detail = (f", {_MODE.value}, {_CLASSES.value} classes"
            if _WORKLOAD.value == "class_synthesis" else "")
  print(f"{_WORKLOAD.value}{detail}: batch {_BATCH.value}, {_PATCH.value}×"
        f"{_PATCH.value}×{_CHANNELS.value}, network {features}, "
        f"{_STEPS.value} steps, median of {_REPEATS.value}, {os.cpu_count()} "
        "CPU cores visible")
  print(f"{'backend':<12} {'device':<6} {unit:>15} "
        f"{'ms/step':>9} {'compile s':>10} {'vs torch':>9}")
  for r in results:
    ratio = (r["throughput"] / reference["throughput"]
             if reference else float("nan"))
    r["vs_torch"] = ratio
    print(f"{r['backend']:<12} {r['device']:<6} "
          f"{r['throughput']:>15.1f} {r['ms_per_step']:>9.1f} "
          f"{r['compile_seconds']:>10.1f} {ratio:>9.2f}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
