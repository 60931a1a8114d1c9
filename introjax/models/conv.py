"""Convolution used by every critic (NHWC, HWIO)."""
from jax import lax


def conv2d(x, kernel, stride=1, padding="SAME"):
  """2-D cross-correlation, NHWC input and HWIO kernel."""
  return lax.conv_general_dilated(
      x, kernel, (stride, stride), padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
