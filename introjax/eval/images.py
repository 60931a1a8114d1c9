"""Sample images written as PNG files."""
import io
import math

import jax
import numpy as np

from introjax import paths


def to_uint8(images):
  """[-1, 1] floats -> uint8."""
  images = np.asarray(images, np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images, columns=None, gap=2):
  """(N, H, W, C) images in [-1, 1] -> one (rows*H, columns*W, C) uint8
  image with white gaps."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  sheet = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), 255,
                  np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    sheet[r * (h + gap):r * (h + gap) + h,
          col * (w + gap):col * (w + gap) + w] = image
  return sheet


def save_png(path, image):
  """Writes one (H, W, C) uint8 image (C = 1 or 3); on a multi-host run
  only process 0 writes, so a shared workdir gets one copy."""
  if jax.process_index() != 0:
    return
  from PIL import Image
  image = image[..., 0] if image.shape[-1] == 1 else image
  png = io.BytesIO()
  Image.fromarray(image).save(png, format="PNG")
  paths.write_bytes(path, png.getvalue())


def save_grid(path, images, columns=None, scale=1):
  """A grid of `images` (N, H, W, C) in [-1, 1], each enlarged `scale`×
  (nearest neighbour: 8×8 digits are unreadable at their own size)."""
  images = np.asarray(images)
  if scale > 1:
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  save_png(path, grid(images, columns))


def readable_scale(side, at_least=32):
  """The whole-number enlargement that shows a side-`side` image at
  `at_least` pixels or more."""
  return max(1, -(-at_least // side))


def center_crop(images, size):
  """The central size×size region of (N, H, W, C) canvases."""
  h, w = images.shape[1:3]
  top, left = (h - size) // 2, (w - size) // 2
  return images[:, top:top + size, left:left + size]
