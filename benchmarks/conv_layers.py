"""Per-layer convolution timings of the 64x64 DCGAN critic on this machine.

For every layer (5x5 kernels, stride 2, SAME) it times the forward pass, the
input gradient (dx) and the kernel gradient (dw) of plain
`lax.conv_general_dilated` and of `introjax.models.conv.conv2d`, then the
whole critic's input gradient (forward + backward, what synthesis runs), and
the same in PyTorch eager if torch is installed. Times are medians over
--repeats runs after one warm-up run (fewer runs for anything slower than a
second), in milliseconds.

  python benchmarks/conv_layers.py [--batch 100] [--repeats 7] [--no-torch]
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

import jax
from jax import lax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from introjax.models.conv import conv2d  # pylint: disable=g-import-not-at-top

SIZE = 64
CHANNELS = (3, 64, 128, 256, 512)
KERNEL = 5
STRIDE = 2


def lax_conv(x, kernel, stride, padding="SAME"):
  return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def median_ms(fn, repeats):
  """Median wall time of fn() in ms; fn must block until its result is ready."""
  start = time.perf_counter()
  fn()  # Warm-up (and compilation).
  if time.perf_counter() - start > 1.0:
    repeats = min(repeats, 3)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def jax_layer_times(conv, x, kernel, repeats):
  """(fwd, dx, dw) in ms for one layer."""
  fwd = jax.jit(lambda x, w: conv(x, w, STRIDE))
  dy = jnp.ones(jax.eval_shape(fwd, x, kernel).shape, x.dtype)
  dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: fwd(x, w), x)[1](dy)[0])
  dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: fwd(x, w), w)[1](dy)[0])
  return tuple(
      median_ms(lambda f=f, a=a: jax.block_until_ready(f(*a)), repeats)
      for f, a in ((fwd, (x, kernel)), (dx, (x, kernel, dy)),
                   (dw, (x, kernel, dy))))


def jax_critic_input_grad_ms(conv, x, kernels, repeats):
  """The critic's d(sum of logits)/dx, as in synthesis (fwd + bwd)."""
  def critic(kernels, x):
    for i, kernel in enumerate(kernels):
      x = conv(x, kernel, STRIDE)
      if i > 0:  # Per-sample LayerNorm, as DCGANCritic (no scale / bias).
        mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
        var = jnp.var(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * lax.rsqrt(var + 1e-6)
      x = jax.nn.leaky_relu(x, 0.2)
    return jnp.sum(x, axis=(1, 2, 3))  # Stands in for the linear logit.

  grad = jax.jit(jax.grad(lambda x, kernels: jnp.sum(critic(kernels, x))))
  return median_ms(lambda: jax.block_until_ready(grad(x, kernels)), repeats)


def torch_times(batch, repeats):
  """Per-layer (fwd, dx, dw) and the critic's input gradient, PyTorch eager."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())

  def same_conv(x, kernel):
    # SAME for an even size, 5x5, stride 2: one row/column before, two after.
    total = KERNEL - STRIDE
    x = F.pad(x, (total // 2, total - total // 2) * 2)
    return F.conv2d(x, kernel, stride=STRIDE)

  def timed(fn):
    return median_ms(fn, repeats)

  layers = []
  size = SIZE
  gen = torch.Generator().manual_seed(0)
  kernels = []
  for cin, cout in zip(CHANNELS[:-1], CHANNELS[1:]):
    x = torch.randn(batch, cin, size, size, generator=gen, requires_grad=True)
    kernel = (0.02 * torch.randn(cout, cin, KERNEL, KERNEL, generator=gen)
              ).requires_grad_()
    kernels.append(kernel)
    with torch.no_grad():
      fwd = timed(lambda x=x, k=kernel: same_conv(x, k))
    y = same_conv(x, kernel)
    dy = torch.ones_like(y)
    dx = timed(lambda x=x, y=y, dy=dy: torch.autograd.grad(
        y, x, dy, retain_graph=True))
    dw = timed(lambda k=kernel, y=y, dy=dy: torch.autograd.grad(
        y, k, dy, retain_graph=True))
    layers.append((fwd, dx, dw))
    size //= STRIDE

  def critic_input_grad(x):
    x = x.detach().requires_grad_()
    h = x
    for i, kernel in enumerate(kernels):
      h = same_conv(h, kernel)
      if i > 0:
        h = F.layer_norm(h, h.shape[1:], eps=1e-6)
      h = F.leaky_relu(h, 0.2)
    return torch.autograd.grad(h.sum(), x)[0]

  x = torch.randn(batch, 3, SIZE, SIZE, generator=gen)
  return layers, timed(lambda: critic_input_grad(x))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--no-torch", action="store_true")
  args = parser.parse_args()

  key = jax.random.PRNGKey(0)
  inputs, kernels = [], []
  size = SIZE
  for cin, cout in zip(CHANNELS[:-1], CHANNELS[1:]):
    key, kx, kw = jax.random.split(key, 3)
    inputs.append(jax.random.normal(kx, (args.batch, size, size, cin)))
    kernels.append(0.02 * jax.random.normal(kw, (KERNEL, KERNEL, cin, cout)))
    size //= STRIDE

  torch_result = None
  if not args.no_torch:
    try:
      torch_result = torch_times(args.batch, args.repeats)
    except ImportError:
      pass

  print(f"jax {jax.__version__} on {jax.default_backend()}, "
        f"{os.cpu_count()} cores, batch {args.batch}, "
        f"median ms of {args.repeats} runs")
  columns = ["lax", "conv2d"] + (["torch"] if torch_result else [])
  header = f"{'layer':<22}" + "".join(
      f"{name + ' ' + part:>13}" for name in columns
      for part in ("fwd", "dx", "dw"))
  print(header)
  print("-" * len(header))
  for i, (x, kernel) in enumerate(zip(inputs, kernels)):
    row = list(jax_layer_times(lax_conv, x, kernel, args.repeats))
    row += jax_layer_times(conv2d, x, kernel, args.repeats)
    if torch_result:
      row += torch_result[0][i]
    h, _, cin, cout = x.shape[1:] + kernel.shape[-1:]
    name = f"{h}x{h}x{cin}->{h // STRIDE}x{h // STRIDE}x{cout}"
    print(f"{name:<22}" + "".join(f"{t:>13.1f}" for t in row), flush=True)

  totals = [jax_critic_input_grad_ms(conv, inputs[0], kernels, args.repeats)
            for conv in (lax_conv, conv2d)]
  if torch_result:
    totals.append(torch_result[1])
  print("critic input gradient (fwd+bwd): " + ", ".join(
      f"{name} {t:.1f}" for name, t in zip(columns, totals)))


if __name__ == "__main__":
  main()
