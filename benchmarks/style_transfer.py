r"""Measures IGM §4.2 style transfer from a trained texture workdir: how much
of the texture a stylised image carries and how much of its content it
keeps, for one or more α.

    python benchmarks/style_transfer.py --workdir=runs/brick --content=astronaut \
        --alphas=0,0.3,1 --png=docs/style_transfer_brick.png

Per α (the config's style.steps per critic unless --steps is given):
  swd_texture   sliced Wasserstein distance (×10³) between random crops of
                the result and random crops of the texture, the same crops
                of the texture and the same projections for every row (the
                content image itself is the first row: where a transfer that
                does nothing stays);
  ssim          structural similarity of the result to the content (1:
                unchanged);
  layout        correlation of the result and the content, both blurred
                (Gaussian σ = 4 px): the picture's large-scale layout, which
                a recognisable result keeps even under the texture's detail;
  change        mean absolute change from the content, in grey levels.
--png writes content | result at the first α | a crop of the texture, side
by side at the same scale. Exit status 0; the table goes to stdout.
"""
import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from introjax.compare import side_by_side  # noqa: E402
from introjax.data import images as image_data  # noqa: E402
from introjax.eval import swd  # noqa: E402
from introjax.eval.images import save_png  # noqa: E402
from introjax.saved import load_model  # noqa: E402

CROP = 64
CROPS = 32


def random_crops(image, key, n, side):
  """n random side×side crops of one (H, W, C) image."""
  h, w = image.shape[:2]
  ky, kx = jax.random.split(key)
  ys = np.asarray(jax.random.randint(ky, (n,), 0, h - side + 1))
  xs = np.asarray(jax.random.randint(kx, (n,), 0, w - side + 1))
  return np.stack([image[y:y + side, x:x + side] for y, x in zip(ys, xs)])


def measures(result, content, texture, key):
  import scipy.ndimage
  import skimage.metrics
  k_real, k_fake, k_swd = jax.random.split(key, 3)
  real = random_crops(texture, k_real, CROPS, CROP)
  fake = random_crops(result, k_fake, CROPS, CROP)
  grey = lambda x: np.asarray(x, np.float64).mean(axis=-1)
  a, b = grey(result), grey(content)
  blur = lambda x: scipy.ndimage.gaussian_filter(x, 4.0).ravel()
  return dict(
      swd_texture=swd.sliced_wasserstein(real, fake, k_swd)["mean"],
      ssim=float(skimage.metrics.structural_similarity(a, b, data_range=2.0)),
      layout=float(np.corrcoef(blur(a), blur(b))[0, 1]),
      change=float(np.abs(a - b).mean() * 127.5))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--content", default="astronaut")
  parser.add_argument("--content_size", type=int, default=256)
  parser.add_argument("--alphas", default="0.3")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--png", default="")
  args = parser.parse_args()

  model, cascade, round_index = load_model(args.workdir)
  config = model.config
  channels = model.canvas_shape[2]
  content = image_data.load_image(args.content, size=args.content_size,
                                  channels=channels)
  data = config.data
  texture = image_data.load_image(data.image_path or data.texture,
                                  size=data.image_size, channels=channels)
  steps = config.style.steps if args.steps is None else args.steps
  key = jax.random.PRNGKey(args.seed)
  k_measure, k_style = jax.random.split(key)
  print(f"{args.workdir}: round {round_index}, {int(cascade.count)} critics, "
        f"{steps} steps each; content {args.content!r} at "
        f"{args.content_size}×{args.content_size}")
  print("| image | SWD to texture (×10³) | SSIM to content | layout | "
        "change (grey levels) |")
  print("|---|---|---|---|---|")

  def row(name, image):
    m = measures(image, content, texture, k_measure)
    print(f"| {name} | {m['swd_texture']:.1f} | {m['ssim']:.3f} | "
          f"{m['layout']:.3f} | {m['change']:.1f} |", flush=True)

  row("the content", content)
  first = None
  for alpha in [float(a) for a in args.alphas.split(",")]:
    image, _ = model.stylize(cascade, content, alpha, steps, k_style)
    image = np.asarray(jax.device_get(image))
    first = image if first is None else first
    row(f"α = {alpha:g}", image)
  if args.png:
    side = min(texture.shape[0], texture.shape[1], content.shape[0])
    crop = texture[:side, :side]
    sheet = side_by_side([content[None], first[None], crop[None]])
    save_png(args.png, sheet)
    print(f"wrote {args.png}: content | α = {args.alphas.split(',')[0]} | "
          "texture")


if __name__ == "__main__":
  main()
