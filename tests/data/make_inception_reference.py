"""Records what PyTorch computes for the FID Inception network, so that the
tests compare our JAX network against PyTorch where PyTorch is not installed.

    pip install torch && python tests/data/make_inception_reference.py

rewrites `inception_reference.npz` beside this file from:

  * the weights `inception.random_params(PARAMS_SEED)` (drawn in NumPy, so
    the tests draw them again instead of storing 95 MB), laid out as
    pytorch-fid's state dict, saved with `torch.save` and read back with
    `torch.load`: every tensor's name, shape and a fingerprint of its values;
  * pytorch-fid's forward pass in `torch.nn.functional` over that state dict
    (pool3 features and logits of `network_images()` resized to 75×75), and
    its Mixed_7c block alone on `e2_input()`;
  * `F.interpolate(..., mode="bilinear", align_corners=False)` of
    `resize_inputs()`.

The inputs come from seeded NumPy generators; the file also records sums of
them and of the weights, so a test whose NumPy draws other numbers says so
instead of reporting a mismatch of the network. Regenerate the file when
the network's parameters or these definitions change on purpose.

The test module imports this file for its input and PyTorch definitions;
only the functions named torch_* (and `main`) need PyTorch.
"""
import os
import sys
import tempfile

import numpy as np

PARAMS_SEED = 0
RESIZE_TO = 75   # the smallest input the network takes
# (input side, output side) of the resize references. Same size is the
# identity, recorded as torch's largest difference from its input.
RESIZE_CASES = ((32, 75), (120, 75), (299, 299))
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "inception_reference.npz")


# Inputs (NumPy only) ---------------------------------------------------------


def network_images():
  """24×24 up to 75×75: the odd grid sizes make every pool's border matter
  (the 3×3 grid after Mixed_6a is all border)."""
  return np.random.default_rng(8).uniform(-1, 1, (2, 24, 24, 3)).astype(
      np.float32)


def e2_input():
  """Mixed_7c's input at 3×3 (all border), NHWC."""
  return np.random.default_rng(9).normal(size=(2, 3, 3, 2048)).astype(
      np.float32)


def resize_inputs():
  """One NHWC image per case of RESIZE_CASES."""
  rng = np.random.default_rng(10)
  return [rng.uniform(-1, 1, (1, size_in, size_in, 3)).astype(np.float32)
          for size_in, _ in RESIZE_CASES]


def input_sums():
  return np.array([np.sum(x, dtype=np.float64) for x in
                   [network_images(), e2_input(), *resize_inputs()]])


def params_sums(flat_params):
  """Per-tensor sums of our flattened parameters, in path order."""
  return np.array([np.sum(flat_params[k], dtype=np.float64)
                   for k in sorted(flat_params)])


def numpy_state_dict(params):
  """pytorch-fid's names and layouts for our `params`, as NumPy arrays,
  with the step counters a saved BatchNorm carries."""
  from introjax.eval import inception
  state = {}
  for path, value in inception.flatten_params(params).items():
    name = inception.torch_name(path)
    state[name] = np.ascontiguousarray(inception.to_torch_layout(path, value))
    if path.endswith("bn/var"):
      state[name.replace("running_var", "num_batches_tracked")] = np.array(
          0, np.int64)
  return state


def tensor_list(state):
  """'name shape' of every tensor of a state dict, sorted by name."""
  return np.array([f"{k} {','.join(map(str, np.shape(state[k])))}"
                   for k in sorted(state)])


def layout_fingerprint(state):
  """A number per tensor (sorted by name) that changes when its values do
  or move within it: the dot product of its flattened values with
  cos(0), cos(1), ...; so a transposed kernel gives another number."""
  weights = np.cos(np.arange(max(np.size(v) for v in state.values())))
  out = []
  for k in sorted(state):
    flat = np.asarray(state[k], np.float64).ravel()
    out.append(flat @ weights[:flat.size])
  return np.array(out)


# PyTorch ---------------------------------------------------------------------


def torch_state_dict(params):
  import torch
  return {k: torch.from_numpy(v) for k, v in numpy_state_dict(params).items()}


def _torch_conv(state, name, x, stride=1, padding=0):
  """torchvision's BasicConv2d: conv, BatchNorm (eps 0.001), ReLU."""
  import torch.nn.functional as F
  x = F.conv2d(x, state[f"{name}.conv.weight"], stride=stride,
               padding=padding)
  x = F.batch_norm(x, state[f"{name}.bn.running_mean"],
                   state[f"{name}.bn.running_var"],
                   state[f"{name}.bn.weight"], state[f"{name}.bn.bias"],
                   training=False, eps=0.001)
  return F.relu(x)


def _torch_avg(x):
  import torch.nn.functional as F
  return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def torch_e_block(state, n, x, pool):
  """FIDInceptionE_1 (pool="avg") / E_2 (pool="max") named `n` in `state`
  (`n` may be "" for a state dict of the block alone), NCHW."""
  import torch
  import torch.nn.functional as F
  p = f"{n}." if n else ""
  conv = lambda name, x, **kw: _torch_conv(state, p + name, x, **kw)
  b3 = conv("branch3x3_1", x)
  b3 = torch.cat([conv("branch3x3_2a", b3, padding=(0, 1)),
                  conv("branch3x3_2b", b3, padding=(1, 0))], 1)
  bd = conv("branch3x3dbl_2", conv("branch3x3dbl_1", x), padding=1)
  bd = torch.cat([conv("branch3x3dbl_3a", bd, padding=(0, 1)),
                  conv("branch3x3dbl_3b", bd, padding=(1, 0))], 1)
  pooled = F.max_pool2d(x, 3, 1, 1) if pool == "max" else _torch_avg(x)
  return torch.cat([conv("branch1x1", x), b3, bd,
                    conv("branch_pool", pooled)], 1)


def torch_network(state, x, resize_to):
  """pytorch-fid's forward (torchvision's Inception3 with the FID blocks),
  in torch.nn.functional over a state dict, NCHW in [−1, 1]."""
  import torch
  import torch.nn.functional as F
  conv = lambda name, x, **kw: _torch_conv(state, name, x, **kw)

  def block_a(n, x):
    b5 = conv(f"{n}.branch5x5_2", conv(f"{n}.branch5x5_1", x), padding=2)
    b3 = conv(f"{n}.branch3x3dbl_1", x)
    b3 = conv(f"{n}.branch3x3dbl_2", b3, padding=1)
    b3 = conv(f"{n}.branch3x3dbl_3", b3, padding=1)
    return torch.cat([conv(f"{n}.branch1x1", x), b5, b3,
                      conv(f"{n}.branch_pool", _torch_avg(x))], 1)

  def block_b(n, x):
    b3 = conv(f"{n}.branch3x3", x, stride=2)
    bd = conv(f"{n}.branch3x3dbl_1", x)
    bd = conv(f"{n}.branch3x3dbl_2", bd, padding=1)
    bd = conv(f"{n}.branch3x3dbl_3", bd, stride=2)
    return torch.cat([b3, bd, F.max_pool2d(x, 3, 2)], 1)

  def block_c(n, x):
    r, c = (0, 3), (3, 0)
    b7 = conv(f"{n}.branch7x7_1", x)
    b7 = conv(f"{n}.branch7x7_3", conv(f"{n}.branch7x7_2", b7, padding=r),
              padding=c)
    bd = conv(f"{n}.branch7x7dbl_1", x)
    for i, pad in zip(range(2, 6), (c, r, c, r)):
      bd = conv(f"{n}.branch7x7dbl_{i}", bd, padding=pad)
    return torch.cat([conv(f"{n}.branch1x1", x), b7, bd,
                      conv(f"{n}.branch_pool", _torch_avg(x))], 1)

  def block_d(n, x):
    b3 = conv(f"{n}.branch3x3_2", conv(f"{n}.branch3x3_1", x), stride=2)
    b7 = conv(f"{n}.branch7x7x3_1", x)
    b7 = conv(f"{n}.branch7x7x3_2", b7, padding=(0, 3))
    b7 = conv(f"{n}.branch7x7x3_3", b7, padding=(3, 0))
    b7 = conv(f"{n}.branch7x7x3_4", b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)

  x = F.interpolate(x, size=(resize_to, resize_to), mode="bilinear",
                    align_corners=False)
  x = conv("Conv2d_1a_3x3", x, stride=2)
  x = conv("Conv2d_2a_3x3", x)
  x = F.max_pool2d(conv("Conv2d_2b_3x3", x, padding=1), 3, 2)
  x = conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x))
  x = F.max_pool2d(x, 3, 2)
  for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = block_a(n, x)
  x = block_b("Mixed_6a", x)
  for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = block_c(n, x)
  x = torch_e_block(state, "Mixed_7b", block_d("Mixed_7a", x), "avg")
  x = torch_e_block(state, "Mixed_7c", x, "max")
  features = x.mean(dim=(2, 3))
  return features, F.linear(features, state["fc.weight"], state["fc.bias"])


def torch_nhwc(fn, *nhwc):
  """`fn` of NCHW torch tensors, on and back to NHWC NumPy (float32)."""
  import torch
  with torch.no_grad():
    out = fn(*[torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
               for x in nhwc])
  return out.numpy().transpose(0, 2, 3, 1)


def torch_resize(x, size):
  """torch's bilinear resize of an NHWC image (half-pixel centres)."""
  import torch.nn.functional as F
  return torch_nhwc(lambda t: F.interpolate(
      t, size=(size, size), mode="bilinear", align_corners=False), x)


def torch_e2_block(state, x):
  """pytorch-fid's Mixed_7c of NHWC `x`."""
  return torch_nhwc(lambda t: torch_e_block(state, "Mixed_7c", t, "max"), x)


def torch_network_outputs(state, images, resize_to=RESIZE_TO):
  """(features, logits) of NHWC `images`, NumPy float32."""
  import torch
  with torch.no_grad():
    outs = torch_network(state, torch.from_numpy(np.ascontiguousarray(
        images.transpose(0, 3, 1, 2))), resize_to)
  return tuple(o.numpy() for o in outs)


def main():
  import torch
  sys.path.insert(0, os.path.join(os.path.dirname(PATH), "..", ".."))
  from introjax.eval import inception
  params = inception.random_params(PARAMS_SEED)
  with tempfile.TemporaryDirectory() as tmp:
    pth = os.path.join(tmp, "w.pth")
    torch.save(torch_state_dict(params), pth)
    state = torch.load(pth, map_location="cpu", weights_only=True)
  features, logits = torch_network_outputs(state, network_images())
  record = dict(
      torch_version=np.array(torch.__version__),
      params_sums=params_sums(inception.flatten_params(params)),
      input_sums=input_sums(),
      pth_tensors=tensor_list(state),
      pth_fingerprint=layout_fingerprint(
          {k: v.numpy() for k, v in state.items()}),
      network_features=features, network_logits=logits,
      e2_output=torch_e2_block(state, e2_input()))
  for (size_in, size_out), x in zip(RESIZE_CASES, resize_inputs()):
    want = torch_resize(x, size_out)
    if size_in == size_out:
      record["resize_identity_max_diff"] = np.abs(want - x).max()
    else:
      record[f"resize_{size_in}_{size_out}"] = want
  np.savez_compressed(PATH, **record)
  print(f"Wrote {PATH} ({os.path.getsize(PATH) / 1024:.0f} KiB) with "
        f"PyTorch {torch.__version__}.")


if __name__ == "__main__":
  main()
