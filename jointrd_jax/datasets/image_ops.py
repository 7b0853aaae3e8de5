"""ImageNet image transforms as TensorFlow ops, for tf.data workers on the host.

Importing this module imports TensorFlow, hides every GPU from it (TF only reads data
here; the accelerators belong to JAX) and gives its ops one thread each (tf.data
parallelises over images). `streamed` imports it lazily.

The pixels are torchvision's (PIL's), not only the geometry:

- Decoding: JPEGs with libjpeg's accurate integer IDCT (`dct_method="INTEGER_ACCURATE"`,
  libjpeg's default JDCT_ISLOW, what PIL uses; TF's default is the fast IDCT, which
  differs on most values of a photo), so a decoded JPEG equals PIL's bit for bit. The
  training crop is decoded with the fused `decode_and_crop_jpeg`, which decodes only
  the window's rows and columns; it decodes two pixels more on each side and drops
  them, because libjpeg's chroma upsampling treats the edge of a cropped region as an
  image edge (the edge column would differ, by up to tens of levels) and upsamples a
  region one chroma sample wide differently (its rows would differ). PNG, GIF (first
  frame), BMP and WebP go through `tf.io.decode_image`; TIFF and PPM/PGM, which
  TensorFlow cannot decode, through PIL (`Image.open(...).convert("RGB")`,
  torchvision's loader) in a `tf.numpy_function`. The content decides, not the file
  name. Grayscale, CMYK, palette and RGBA images come out as RGB.
- `train_image(contents, key, size)`: torchvision's RandomResizedCrop(size) (scale
  0.08-1, log-uniform aspect ratio 3/4-4/3, 10 attempts, then torchvision's central-crop
  fallback) + RandomHorizontalFlip, uint8 [size, size, 3]. `resize="antialias"` (the
  default) resizes the crop as torchvision does on PIL images,
  `img.crop(box).resize((size, size), BILINEAR)`: PIL's bilinear with its support
  widened by the reduction factor (antialiasing), within 1 level of PIL (PIL rounds its
  first pass to uint8, we do not). `resize="fast"` is bilinear interpolation
  without antialiasing (TF's and big_vision's ImageNet input): faster, but random
  crops of large regions come out sharper and aliased (a whole 500x375 image is shrunk
  2.2x, a large photo's crop often 4x or more), up to tens of levels from torchvision's.
- `eval_image(contents, size, resize)`: torchvision's Resize(resize) + CenterCrop(size)
  with their exact geometry: the shorter side becomes `resize`, the longer
  int(resize * long / short), and the crop starts at round((resized - size) / 2) (Python
  rounding). Only the size x size output pixels of the antialiased resize are computed
  (equal to resizing the whole image and cropping, kernel support outside the crop
  included). The whole image is decoded.

The antialiased resize (`resample`) is separable: each axis is a product with PIL's
bilinear weight matrix, computed as a batch of small dense matrix products over blocks
of 16 output rows and the band of input rows they read. Matrix products are the fast
path on a CPU: about 0.75 ms for a crop of a 500x375 image on one core, where TF's own
antialiased resize (`tf.image.resize(antialias=True)`, the same filter) takes 1.35 ms
and bilinear without antialiasing 0.33 ms; decoding takes about 1.2 ms.

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
try:  # One thread per op: tf.data works on many images at once, and oneDNN's matrix
  # products would otherwise spread each image over every core and spin waiting (on 2
  # cores the antialiased pipeline ran at ~560 images/s instead of ~680-750).
  tf.config.threading.set_intra_op_parallelism_threads(1)
except RuntimeError:  # TensorFlow's runtime already started: its setting stays
  pass

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


DCT_METHOD = "INTEGER_ACCURATE"  # libjpeg's JDCT_ISLOW: PIL's (torchvision's) pixels
RESIZES = ("antialias", "fast")
_BLOCK = 16  # output rows per dense block of the antialiased resize
_MARGIN = 2  # pixels decoded around a JPEG crop window and dropped (module docstring)
# Formats TensorFlow cannot decode, read with PIL: TIFF (both byte orders), binary and
# ASCII PGM/PPM. Anything else unknown goes to tf.io.decode_image, which refuses it.
_PIL_MAGIC = (b"II*\x00", b"MM\x00*", b"P2", b"P3", b"P5", b"P6")


def _pil_rgb(contents):
  """torchvision's loader: PIL's Image.open(...).convert('RGB'), uint8 [H, W, 3]."""
  import io  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  data = contents.item() if isinstance(contents, np.ndarray) else contents  # eager: 0-d array
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except Image.UnidentifiedImageError:
    raise ValueError("PIL cannot identify this TIFF/PPM/PGM image") from None
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"PIL cannot decode this image ({type(e).__name__}: {e})") from None


def _is_pil_format(contents):
  return tf.reduce_any([tf.strings.substr(contents, 0, len(m)) == m for m in _PIL_MAGIC])


def _decode_other(contents):
  """A non-JPEG image, whole: uint8 RGB [H, W, 3]."""
  image = tf.cond(
      _is_pil_format(contents),
      lambda: tf.numpy_function(_pil_rgb, [contents], tf.uint8, stateful=False),
      lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return image


def decode_region(contents, window_fn):
  """A decoded region holding the window `window_fn(height, width) -> (top, left, h, w)`.

  Returns (region uint8 [H', W', 3], int32 [4] (top, left, h, w) of the window in the
  region). JPEG (detected from the bytes): `decode_and_crop_jpeg` of the window and
  `_MARGIN` pixels around it (see the module docstring); anything else: the whole image.
  """

  def jpeg():
    shape = tf.io.extract_jpeg_shape(contents)
    top, left, h, w = window_fn(shape[0], shape[1])
    m = _MARGIN
    t0, l0 = tf.maximum(top - m, 0), tf.maximum(left - m, 0)
    b0, r0 = tf.minimum(top + h + m, shape[0]), tf.minimum(left + w + m, shape[1])
    region = tf.io.decode_and_crop_jpeg(contents, tf.stack([t0, l0, b0 - t0, r0 - l0]),
                                        channels=3, dct_method=DCT_METHOD)
    return region, tf.stack([top - t0, left - l0, h, w])

  def other():
    image = _decode_other(contents)
    shape = tf.shape(image)
    return image, tf.stack(window_fn(shape[0], shape[1]))

  region, window = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
  region.set_shape([None, None, 3])
  return region, window


def decode_window(contents, window_fn):
  """The window `window_fn(height, width) -> (top, left, h, w)` of an image, decoded:
  uint8 RGB [h, w, 3], equal to PIL's decoded image cropped."""
  region, window = decode_region(contents, window_fn)
  top, left, h, w = tf.unstack(window)
  return region[top:top + h, left:left + w]


def decode_rgb(contents):
  """The whole image, uint8 RGB [H, W, 3], as PIL decodes it."""
  image = tf.cond(tf.io.is_jpeg(contents),
                  lambda: tf.io.decode_jpeg(contents, channels=3, dct_method=DCT_METHOD),
                  lambda: _decode_other(contents))
  image.set_shape([None, None, 3])
  return image


def _to_uint8(x):
  return tf.saturate_cast(tf.round(x), tf.uint8)


def pil_weights(in_sizes, out_sizes, starts, flips, size: int, block: int = _BLOCK):
  """PIL's antialiased bilinear weights for both axes, in dense blocks of output rows.

  Axis a resizes in_sizes[a] pixels to out_sizes[a] and keeps outputs starts[a] ..
  starts[a] + size - 1 (in reverse order where flips[a]). PIL's coefficients (its
  Resample.c): scale = in / out, support s = max(scale, 1); output k reads the pixels
  whose centres lie within s of its centre (k + 0.5) * scale, weighted
  1 - |distance| / s and normalised to sum 1 (no weight outside the image).

  Returns idx int32 [2, nb, L] (the input rows each block of `block` outputs reads,
  clamped) and w float32 [2, nb, block, L] (zero where a row is not read), nb =
  ceil(size / block); rows past `size` repeat the last output.
  """
  nb = -(-size // block)
  n_in = tf.cast(in_sizes, tf.float32)[:, None]
  scale = n_in / tf.cast(out_sizes, tf.float32)[:, None]
  support = tf.maximum(scale, 1.0)
  k = tf.minimum(tf.range(nb * block), size - 1)[None, :]
  k = tf.where(tf.reshape(flips, [2, 1]), size - 1 - k, k) + tf.reshape(starts, [2, 1])
  centre = (tf.cast(k, tf.float32) + 0.5) * scale  # [2, nb * block]
  lo = tf.reduce_min(tf.reshape(tf.floor(tf.nn.relu(centre - support + 0.5)),
                                [2, nb, block]), axis=2)
  hi = tf.reduce_max(tf.reshape(tf.minimum(tf.floor(centre + support + 0.5), n_in),
                                [2, nb, block]), axis=2)
  length = tf.cast(tf.reduce_max(hi - lo), tf.int32)
  pos = lo[:, :, None] + tf.range(length, dtype=tf.float32)  # [2, nb, L]
  distance = pos[:, :, None, :] + 0.5 - tf.reshape(centre, [2, nb, block, 1])
  w = tf.nn.relu(1.0 - tf.abs(distance) / support[:, :, None, None])
  w = tf.where(pos[:, :, None, :] < n_in[:, :, None, None], w, 0.0)
  w = w / tf.reduce_sum(w, axis=3, keepdims=True)
  return tf.cast(tf.minimum(pos, n_in[:, :, None] - 1), tf.int32), w


def resample(region, offsets, weights, size: int):
  """The separable resize `weights` (`pil_weights`) of region uint8 [H, W, 3], whose
  rows / columns are numbered from `offsets` (top, left): float32 [size, size, 3]."""
  idx, w = weights
  height, width = tf.shape(region)[0], tf.shape(region)[1]
  rows = tf.gather(tf.reshape(region, [height, width * 3]), idx[0] + offsets[0])
  y = tf.matmul(w[0], tf.cast(rows, tf.float32))  # rows first: [nb, block, W * 3]
  y = tf.transpose(tf.reshape(y, [-1, width, 3])[:size], [1, 0, 2])
  z = tf.matmul(w[1], tf.gather(tf.reshape(y, [width, size * 3]), idx[1] + offsets[1]))
  return tf.transpose(tf.reshape(z, [-1, size, 3])[:size], [1, 0, 2])  # columns


def resized_crop(contents, window_fn, size: int, *, flip=False, resize: str = "antialias"):
  """The window `window_fn(height, width) -> (top, left, h, w)` of an encoded image,
  resized to uint8 [size, size, 3] and mirrored left-right where `flip` (bool tensor)."""
  if resize not in RESIZES:
    raise ValueError(f"resize={resize!r}: expected one of {RESIZES}")
  region, window = decode_region(contents, window_fn)
  top, left, h, w = tf.unstack(window)
  flip = tf.convert_to_tensor(flip, tf.bool)
  if resize == "antialias":
    weights = pil_weights(tf.stack([h, w]), [size, size], [0, 0], tf.stack([False, flip]),
                          size)
    image = tf.cast(resample(region, (top, left), weights, size) + 0.5, tf.uint8)  # >= 0.5
  else:
    crop = tf.cast(region[top:top + h, left:left + w], tf.float32)
    image = _to_uint8(tf.image.resize(crop, [size, size], method="bilinear"))
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  image.set_shape([size, size, 3])
  return image


def train_image(contents, key, size: int = 224, *, resize: str = "antialias"):
  """Random-resized crop + horizontal flip of one encoded image: uint8 [size, size, 3]."""
  u = crop_uniforms(key)
  return resized_crop(contents, lambda h, w: random_resized_crop_window(h, w, u), size,
                      flip=flip_of(u), resize=resize)


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


def eval_image(contents, size: int = 224, resize: int = 256):
  """Resize the shorter side to `resize`, centre-crop `size`: uint8 [size, size, 3]."""
  image = decode_rgb(contents)
  shape = tf.shape(image)
  (rh, rw), (top, left) = eval_geometry(shape[0], shape[1], size, resize)
  weights = pil_weights(shape[:2], tf.stack([rh, rw]), tf.stack([top, left]),
                        [False, False], size)
  out = tf.cast(resample(image, (0, 0), weights, size) + 0.5, tf.uint8)
  out.set_shape([size, size, 3])
  return out


_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|\s+")


def tf_message(error) -> str:
  """The useful part of a TensorFlow error, on one line."""
  text = getattr(error, "message", None) or str(error)
  text = text.split("Traceback (most recent call last)")[0]  # a Python function's error
  return _TF_NOISE.sub(" ", text).strip()[:300]
