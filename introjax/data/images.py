"""Images from disk or from scikit-image's bundled set, as float32 in [-1, 1].

Every config has a bundled default that needs no network: scikit-image
ships its sample images inside the package.
"""

import numpy as np

from introjax import paths
from introjax.errors import ImageError

# Bundled sample images by name: textures for IGM/WINN, photos for content.
BUNDLED = ("brick", "grass", "gravel", "camera", "astronaut", "coffee",
           "chelsea", "rocket")


def _read(source):
  import skimage.data
  import skimage.io
  if source in BUNDLED:
    return getattr(skimage.data, source)()
  if not paths.exists(source):
    raise ImageError(
        f"Image file {source!r} does not exist; give a readable image path "
        f"or one of the bundled images {', '.join(BUNDLED)}.")
  try:
    return skimage.io.imread(paths.readable(source))
  except Exception as e:  # pylint: disable=broad-except
    raise ImageError(f"Could not read {source!r} as an image ({e}); use a "
                     "PNG or JPEG file.") from e


def load_image(source, size=None, channels=None, min_side=0):
  """Reads `source` (a bundled name or a path) as (H, W, C) float32 in
  [-1, 1], resized so its shorter side is `size` and centre-cropped to
  square when `size` is given, with `channels` (1 or 3) when given.

  An image (as read, or as resized) with a side under `min_side` pixels, the
  training patch, is refused rather than blown up.
  """
  import skimage.color
  import skimage.transform
  image = np.asarray(_read(source))
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ImageError(f"Image {source!r} has shape {image.shape}; expected a "
                     "grey, RGB or RGBA picture.")
  if image.shape[-1] == 4:
    image = image[..., :3]
  for side, what in ((min(image.shape[:2]), "is"), (size, "would be resized to")):
    if side and side < min_side:
      raise ImageError(
          f"Image {source!r} {what} {side} pixels on its shorter side, smaller "
          f"than the {min_side}×{min_side} training patch; use a larger image "
          "(or data.image_size) or a smaller data.patch_size.")
  image = image.astype(np.float32)
  if image.max() > 1.0:
    image = image / 255.0
  if channels == 1 and image.shape[-1] == 3:
    image = skimage.color.rgb2gray(image)[..., None]
  elif channels == 3 and image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  if size:
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    image = skimage.transform.resize(image, new_hw, anti_aliasing=scale < 1)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    image = image[top:top + size, left:left + size]
  return (image * 2.0 - 1.0).astype(np.float32)


def texture_canvas(image, pad):
  """The positive canvas: `image` reflect-padded by `pad` on every side, so
  patches drawn uniformly cover the border region like the centre."""
  return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")

