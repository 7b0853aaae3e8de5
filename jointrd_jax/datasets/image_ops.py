"""ImageNet image transforms as TensorFlow ops, for tf.data workers on the host.

Importing this module imports TensorFlow and hides every GPU from it (TF only reads
data here; the accelerators belong to JAX). `streamed` imports it lazily.

- `train_image(contents, key, size)`: torchvision's RandomResizedCrop(size) (scale
  0.08-1, log-uniform aspect ratio 3/4-4/3, 10 attempts, then torchvision's central-crop
  fallback) + RandomHorizontalFlip, uint8 [size, size, 3]. JPEGs are decoded with the
  fused `tf.io.decode_and_crop_jpeg`, which decodes only the crop window; anything else
  (PNG, GIF, BMP, WebP, or a PNG with a .JPEG name) goes through `tf.io.decode_image`.
  Grayscale and CMYK images come out as RGB. The crop is resized with bilinear
  interpolation (half-pixel centres) WITHOUT antialiasing by default: antialiasing costs
  about 40% of the throughput (see experiments/data_throughput.py), and on ImageNet-sized
  images the crop is shrunk by at most ~2.2x, where bilinear without antialiasing is
  close to a box filter (as TF's and big_vision's ImageNet pipelines do).
  `antialias=True` gives PIL's / torchvision's antialiased bilinear instead.
- `eval_image(contents, size, resize)`: torchvision's Resize(resize) + CenterCrop(size)
  with their exact geometry: the shorter side becomes `resize`, the longer
  int(resize * long / short), and the crop starts at round((resized - size) / 2) (Python
  rounding). It is computed as ONE antialiased bilinear scale-and-translate that produces
  only the size x size output pixels (equal to resizing the whole image and cropping,
  kernel support outside the crop included), not as a crop of the source followed by a
  resize. The whole image is decoded.

All randomness is stateless: `key` (int64 [2], see `example_key`) determines the crop
and the flip, so an example's augmentation does not depend on threads, batch layout or
the number of processes. Decoding errors (corrupt, truncated or non-image data) are not
caught here: they stop the pipeline, and `streamed` names the file.
"""
from __future__ import annotations

import math
import re

from jointrd_jax import tensorflow_support

# Imported quietly (no C++ banners) and kept off the GPUs: TF reads data only, JAX owns them.
tf = tensorflow_support.import_tensorflow()

ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 windows before falling back
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
NUM_UNIFORMS = 2 * ATTEMPTS + 3  # area, log-ratio per attempt; 2 offsets; flip
_ALG = "philox"  # explicit, so the draws never depend on the device TF picks


def example_key(seed, epoch, example):
  """The stateless key of one example's augmentation: fold_in((seed, epoch), example)."""
  base = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
  return tf.random.experimental.stateless_fold_in(base, tf.cast(example, tf.int64), alg=_ALG)


def crop_uniforms(key):
  """The NUM_UNIFORMS float64 uniforms in [0, 1) an example's augmentation consumes."""
  return tf.random.stateless_uniform([NUM_UNIFORMS], seed=key, dtype=tf.float64, alg=_ALG)


def random_resized_crop_window(height, width, uniforms, scale=SCALE, ratio=RATIO):
  """torchvision's RandomResizedCrop.get_params, vectorised over its 10 attempts.

  Attempt k draws target_area = H*W*U(scale) and aspect = exp(U(log ratio)), and
  proposes w = round(sqrt(target_area * aspect)), h = round(sqrt(target_area /
  aspect)) (round half to even, like Python's round); the first attempt with
  0 < w <= W and 0 < h <= H wins, at offsets i = floor(u * (H - h + 1)),
  j = floor(u' * (W - w + 1)) (torch.randint). If none fits: the central crop of the
  whole image, narrowed to the nearest allowed aspect ratio when the image's own lies
  outside `ratio`. Arithmetic in float64, like torchvision's Python floats.

  Returns int32 (top, left, h, w); `uniforms` is `crop_uniforms(key)`.
  """
  a = ATTEMPTS
  h_img = tf.cast(height, tf.float64)
  w_img = tf.cast(width, tf.float64)
  u = tf.convert_to_tensor(uniforms, tf.float64)
  target = h_img * w_img * (scale[0] + (scale[1] - scale[0]) * u[:a])
  lo, hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = tf.exp(lo + (hi - lo) * u[a:2 * a])
  w = tf.round(tf.sqrt(target * aspect))
  h = tf.round(tf.sqrt(target / aspect))
  fits = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)  # first True (or 0)
  h_ok, w_ok = h[first], w[first]
  top_ok = tf.floor(u[2 * a] * (h_img - h_ok + 1))
  left_ok = tf.floor(u[2 * a + 1] * (w_img - w_ok + 1))
  # Fallback: torchvision's central crop.
  in_ratio = w_img / h_img
  w_fb = tf.where(in_ratio > ratio[1], tf.round(h_img * ratio[1]), w_img)
  h_fb = tf.where(in_ratio < ratio[0], tf.round(w_img / ratio[0]), h_img)
  top_fb = tf.floor((h_img - h_fb) / 2)
  left_fb = tf.floor((w_img - w_fb) / 2)
  any_fit = tf.reduce_any(fits)
  pick = lambda ok, fb: tf.cast(tf.where(any_fit, ok, fb), tf.int32)
  return pick(top_ok, top_fb), pick(left_ok, left_fb), pick(h_ok, h_fb), pick(w_ok, w_fb)


def flip_of(uniforms):
  """RandomHorizontalFlip(p=0.5): flip when the last uniform is < 0.5."""
  return uniforms[NUM_UNIFORMS - 1] < 0.5


def decode_window(contents, window_fn):
  """Decodes the window `window_fn(height, width) -> (top, left, h, w)` of an image.

  JPEG (detected from the bytes, not the file name): `decode_and_crop_jpeg`, which
  decodes only the window's rows and columns; anything else: `decode_image` of the
  whole image (first frame of a GIF), then a slice. Always uint8 RGB [h, w, 3].
  """

  def jpeg():
    shape = tf.io.extract_jpeg_shape(contents)
    top, left, h, w = window_fn(shape[0], shape[1])
    return tf.io.decode_and_crop_jpeg(contents, tf.stack([top, left, h, w]), channels=3)

  def other():
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    shape = tf.shape(image)
    top, left, h, w = window_fn(shape[0], shape[1])
    return image[top:top + h, left:left + w]

  return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


def decode_rgb(contents):
  """The whole image, uint8 RGB [H, W, 3] (JPEG, PNG, GIF's first frame, BMP, WebP)."""
  image = tf.cond(tf.io.is_jpeg(contents),
                  lambda: tf.io.decode_jpeg(contents, channels=3),
                  lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return image


def _to_uint8(x):
  return tf.saturate_cast(tf.round(x), tf.uint8)


def train_image(contents, key, size: int = 224, *, antialias: bool = False):
  """Random-resized crop + horizontal flip of one encoded image: uint8 [size, size, 3]."""
  u = crop_uniforms(key)
  crop = decode_window(contents, lambda h, w: random_resized_crop_window(h, w, u))
  image = tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear",
                          antialias=antialias)
  image = _to_uint8(image)
  image = tf.cond(flip_of(u), lambda: tf.reverse(image, axis=[1]), lambda: image)
  image.set_shape([size, size, 3])
  return image


def eval_geometry(height, width, size: int = 224, resize: int = 256):
  """torchvision's Resize(resize) + CenterCrop(size): ((rh, rw), (top, left)), int32."""
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  short, long = tf.minimum(h, w), tf.maximum(h, w)
  long_out = tf.floor(resize * long / short)  # int(size * long / short)
  rh = tf.where(h <= w, tf.constant(resize, tf.float64), long_out)
  rw = tf.where(h <= w, long_out, tf.constant(resize, tf.float64))
  top = tf.round((rh - size) / 2)  # int(round((H - size) / 2.0)), half to even
  left = tf.round((rw - size) / 2)
  i32 = lambda v: tf.cast(v, tf.int32)
  return (i32(rh), i32(rw)), (i32(top), i32(left))


def eval_image(contents, size: int = 224, resize: int = 256, *, antialias: bool = True):
  """Resize the shorter side to `resize`, centre-crop `size`: uint8 [size, size, 3]."""
  image = tf.cast(decode_rgb(contents), tf.float32)
  shape = tf.shape(image)
  (rh, rw), (top, left) = eval_geometry(shape[0], shape[1], size, resize)
  scale = tf.stack([tf.cast(rh, tf.float32) / tf.cast(shape[0], tf.float32),
                    tf.cast(rw, tf.float32) / tf.cast(shape[1], tf.float32)])
  out = tf.raw_ops.ScaleAndTranslate(
      images=image[None], size=tf.constant([size, size], tf.int32), scale=scale,
      translation=-tf.cast(tf.stack([top, left]), tf.float32),
      kernel_type="triangle", antialias=antialias)[0]
  out = _to_uint8(out)
  out.set_shape([size, size, 3])
  return out


_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|\s+")


def tf_message(error) -> str:
  """The useful part of a TensorFlow error, on one line."""
  text = getattr(error, "message", None) or str(error)
  return _TF_NOISE.sub(" ", text).strip()[:300]
