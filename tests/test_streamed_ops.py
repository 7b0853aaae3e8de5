"""ImageNet transforms (datasets/image_ops.py) against torchvision's: the RandomResizedCrop
sampler, and the pixels, compared with PIL (torchvision's image backend) on a real
photograph and a generated textured image: JPEG decoding, the fused decode-and-crop, the
training crop resized at fixed windows, the evaluation image; every image format."""
import io
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from PIL import Image  # noqa: E402

from jointrd_jax.datasets import image_ops  # noqa: E402

A = image_ops.ATTEMPTS


def torchvision_window(height, width, u, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision.transforms.RandomResizedCrop.get_params, its random draws replaced by
  the uniforms `u` (areas, log-ratios, then the two offsets), in Python floats."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for k in range(A):
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[k])
    aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[A + k])
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    if 0 < w <= width and 0 < h <= height:
      i = int(u[2 * A] * (height - h + 1))  # torch.randint(0, height - h + 1)
      j = int(u[2 * A + 1] * (width - w + 1))
      return i, j, h, w
  in_ratio = float(width) / float(height)  # fallback to central crop
  if in_ratio < min(ratio):
    w = width
    h = int(round(w / min(ratio)))
  elif in_ratio > max(ratio):
    h = height
    w = int(round(h * max(ratio)))
  else:
    w = width
    h = height
  return (height - h) // 2, (width - w) // 2, h, w


@tf.function
def _windows(h, w, u):
  return tf.map_fn(lambda a: tf.stack(image_ops.random_resized_crop_window(a[0], a[1], a[2])),
                   (h, w, u), fn_output_signature=tf.int32)


def windows(h, w, u):
  """random_resized_crop_window for each row: int [n, 4] (top, left, h, w)."""
  n = len(u)
  h, w = np.broadcast_to(h, (n,)).astype(np.int32), np.broadcast_to(w, (n,)).astype(np.int32)
  return _windows(h, w, np.asarray(u, np.float64)).numpy()


@pytest.fixture(scope="module")
def draws():
  """Uniforms for 3,000 example keys, as the pipeline draws them."""
  ds = tf.data.Dataset.range(3000).map(
      lambda i: image_ops.crop_uniforms(image_ops.example_key(7, 3, i)))
  return next(iter(ds.batch(3000))).numpy()


def test_sampler_equals_torchvision_algorithm(draws):
  rng = np.random.default_rng(0)
  sizes = [(375, 500), (500, 375), (224, 224), (1, 1), (3, 700), (700, 3), (10, 1000),
           (2000, 40)] + [tuple(rng.integers(1, 1200, 2)) for _ in range(40)]
  hw = np.asarray([sizes[n % len(sizes)] for n in range(len(draws))])
  out = windows(hw[:, 0], hw[:, 1], draws)
  fallbacks = 0
  for n, u in enumerate(draws):
    h, w = (int(v) for v in hw[n])
    got = tuple(int(v) for v in out[n])
    want = torchvision_window(int(h), int(w), u)
    assert got == want, (h, w, got, want)
    top, left, ch, cw = got
    assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
    fallbacks += not any(
        0 < round(math.sqrt(h * w * (0.08 + 0.92 * u[k]) * r)) <= w
        and 0 < round(math.sqrt(h * w * (0.08 + 0.92 * u[k]) / r)) <= h
        for k in range(A) for r in [math.exp(math.log(3 / 4) + math.log(16 / 9) * u[A + k])])
  assert fallbacks > 100  # the extreme shapes exercise the central-crop fallback


def test_fallback_is_torchvision_central_crop(draws):
  # No 10-pixel-high window of >= 8% of the area fits: always the fallback, narrowed to
  # aspect 4/3 (w = round(10 * 4/3) = 13), centred.
  u = draws[:200]
  assert (windows(10, 1000, u) == [(10 - 10) // 2, (1000 - 13) // 2, 10, 13]).all()
  assert (windows(1000, 10, u) == [(1000 - 13) // 2, 0, 13, 10]).all()
  # A square image accepts an attempt almost always: the fallback (whole image) is rare.
  assert (windows(300, 300, u) == [0, 0, 300, 300]).all(axis=1).mean() < 0.02


def test_sampler_statistics(draws):
  """Area fraction in [0.08, 1], log aspect ratio uniform on [log 3/4, log 4/3]."""
  h = w = 1000
  out = windows(h, w, draws)
  ch, cw = out[:, 2].astype(float), out[:, 3].astype(float)
  area = ch * cw / (h * w)
  log_aspect = np.log(cw / ch)
  assert area.min() >= 0.08 - 0.002 and area.max() <= 1.0
  assert log_aspect.min() >= math.log(3 / 4) - 0.003 and log_aspect.max() <= math.log(4 / 3) + 0.003
  # Windows of area <= 0.5 always fit at the first attempt: there the draws are exactly
  # torchvision's prior: log aspect uniform, area uniform on [0.08, 0.5].
  small = area <= 0.5
  hist, _ = np.histogram(log_aspect[small], bins=8, range=(math.log(3 / 4), math.log(4 / 3)))
  expected = small.sum() / 8
  assert np.all(np.abs(hist - expected) < 5 * np.sqrt(expected)), hist
  hist, _ = np.histogram(area[small], bins=6, range=(0.08, 0.5))
  assert np.all(np.abs(hist - small.sum() / 6) < 5 * np.sqrt(small.sum() / 6)), hist
  # Offsets uniform over the valid positions: the mean relative offset is about 1/2.
  top = out[:, 0] / np.maximum(h - ch, 1)
  assert abs(top[ch < h].mean() - 0.5) < 0.03
  # The flip: the last uniform, p = 0.5.
  assert abs((draws[:, -1] < 0.5).mean() - 0.5) < 0.03


def _encode(array, fmt, **kw):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kw)
  return buf.getvalue()


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  low = rng.uniform(0, 255, (h // 16 + 2, w // 16 + 2, 3)).astype(np.uint8)
  smooth = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
  return np.clip(smooth + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _textured(h, w, seed=0):
  """Real texture: gradients, sharp-edged patches, fine stripes (period 2.7 px, which
  a resize without antialiasing aliases), a chirp, and noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  img = (xx / w * 180)[..., None] + (yy / h * 60)[..., None] * np.array([1.0, -0.5, 0.3])
  stripes = (np.sin(2 * np.pi * xx / 2.7 + yy / 9.0) > 0) & (yy > h / 2) & (xx < w / 2)
  img += 40 * stripes[..., None]
  img += 30 * (np.sin(2 * np.pi * xx * xx / (4 * w)) * (yy < h / 3))[..., None]
  for _ in range(12):
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    img[y0:y0 + rng.integers(5, h // 3), x0:x0 + rng.integers(5, w // 3)] = rng.uniform(0, 255, 3)
  return np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _pil_decoded(data):
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def jpegs():
  """A real photograph (matplotlib's bundled sample, 512x600, 4:2:0) and a textured
  image at quality 90 (4:2:0, PIL's default), large enough for 2-3x reductions."""
  import matplotlib.cbook  # pylint: disable=g-import-not-at-top
  with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
    photo = f.read()
  return {"photo": photo, "textured": _encode(_textured(480, 720), "JPEG", quality=90)}


# Decoding: TensorFlow and PIL run the same libjpeg(-turbo) code (accurate integer IDCT,
# fancy upsampling, integer colour conversion), so their pixels are EQUAL, not close.


def test_jpeg_decodes_exactly_as_pil(jpegs):
  x = _pil_decoded(jpegs["textured"])
  cases = dict(jpegs, **{
      "444": _encode(x, "JPEG", quality=90, subsampling=0),
      "422": _encode(x[:, :-3], "JPEG", quality=90, subsampling=1),
      "progressive": _encode(x[5:, 3:], "JPEG", quality=90, progressive=True),
      "gray": _encode(np.asarray(Image.fromarray(x).convert("L")), "JPEG", quality=90),
  })
  for name, data in cases.items():
    got = image_ops.decode_rgb(tf.constant(data)).numpy()
    np.testing.assert_array_equal(got, _pil_decoded(data), err_msg=name)


@tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([4], tf.int32)])
def _fused(data, window):
  return image_ops.decode_window(data, lambda h, w: tf.unstack(window))


def test_fused_crop_decodes_exactly_as_pil(jpegs):
  """decode_and_crop_jpeg decodes only the window; libjpeg's chroma upsampling then
  treats the window's edge column as an image edge (up to tens of levels off), and
  upsamples a window one chroma sample wide differently, unless the window is widened
  first. Windows starting on and off the 16-pixel iMCU grid, ending on even and odd
  columns and at the image's edges, one pixel wide or high."""
  for name in ("photo", "textured"):
    data = jpegs[name]
    ref = _pil_decoded(data)
    H, W = ref.shape[:2]
    for left in (0, 1, 15, 16, 17, 48, 63, 64):
      for top, h, w in ((0, H, 101), (7, 90, 64), (33, H - 33, W - left), (16, 1, 1),
                        (1, 17, 1), (5, 2, 3)):
        got = _fused(tf.constant(data), tf.constant([top, left, h, w])).numpy()
        np.testing.assert_array_equal(got, ref[top:top + h, left:left + w],
                                      err_msg=f"{name} {(top, left, h, w)}")


# The antialiased resize against PIL: PIL resizes horizontally, rounds to uint8, then
# vertically (fixed point, 22 fractional bits), so its result is within 0.5 + 1e-6 of
# the exact weighted sum before its final rounding; ours is float32 throughout (within
# ~1e-4). Both round: at most 1 level apart, never more.


def _fixed_windows(H, W):
  return [(0, 0, H, W),  # the whole image, shrunk 2.1-3.2x
          (17, 33, H - 40, W - 50), (H - 200, W - 300, 200, 300),  # large, to the edges
          (101, 203, 90, 150),  # enlarged
          (0, 3, H, 40)]  # shrunk vertically, enlarged horizontally


@pytest.mark.parametrize("name", ["photo", "textured"])
def test_training_crop_matches_pil_at_fixed_windows(jpegs, name):
  """torchvision: img.crop(box).resize((224, 224), BILINEAR), then the flip."""
  data = jpegs[name]
  decoded = Image.fromarray(_pil_decoded(data))
  for top, left, h, w in _fixed_windows(decoded.height, decoded.width):
    want = np.asarray(decoded.crop((left, top, left + w, top + h)).resize((224, 224),
                                                                          Image.BILINEAR), int)
    for flip in (False, True):
      got = image_ops.resized_crop(tf.constant(data), lambda *_: (top, left, h, w), 224,
                                   flip=flip).numpy().astype(int)
      diff = np.abs(got - (want[:, ::-1] if flip else want))
      assert diff.max() <= 1, (name, (top, left, h, w), flip, diff.max())
  # Without antialiasing (resize='fast'), the whole image is tens of levels off.
  fast = image_ops.resized_crop(tf.constant(data), lambda h, w: (0, 0, h, w), 224,
                                resize="fast").numpy().astype(int)
  whole = np.asarray(decoded.resize((224, 224), Image.BILINEAR), int)
  assert np.abs(fast - whole).max() > 10


@pytest.mark.parametrize("name", ["photo", "textured", "png_300x301", "png_257x400"])
def test_eval_image_matches_pil_resize_and_center_crop(jpegs, name):
  """torchvision: Resize(256) (shorter side; longer int(256 * long / short)), then
  CenterCrop(224) at round((resized - 224) / 2)."""
  if name in jpegs:
    data = jpegs[name]
  else:
    h, w = (int(v) for v in name.split("_")[1].split("x"))
    data = _encode(_textured(h, w, seed=2), "PNG")
  img = Image.fromarray(_pil_decoded(data))
  short, long = min(img.size), max(img.size)
  size = (256, 256 * long // short) if img.width == short else (256 * long // short, 256)
  resized = img.resize(size, Image.BILINEAR)  # PIL: antialiased
  left, top = (int(round((s - 224) / 2.0)) for s in resized.size)
  want = np.asarray(resized.crop((left, top, left + 224, top + 224)), int)
  got = image_ops.eval_image(tf.constant(data), 224, 256).numpy().astype(int)
  assert np.abs(got - want).max() <= 1  # see the training crop test


def test_train_image_is_its_window_and_flip_resized():
  jpeg = tf.constant(_encode(_photo(200, 300), "JPEG", quality=90))
  windows, flips = set(), []
  for i in range(40):
    key = image_ops.example_key(1, 2, i)
    a = image_ops.train_image(jpeg, key, 48).numpy()
    np.testing.assert_array_equal(a, image_ops.train_image(jpeg, key, 48).numpy())
    u = image_ops.crop_uniforms(key)
    window = tuple(int(v) for v in image_ops.random_resized_crop_window(200, 300, u))
    flip = bool(image_ops.flip_of(u))
    windows.add(window)
    flips.append(flip)
    same = image_ops.resized_crop(jpeg, lambda *_: window, 48, flip=flip).numpy()
    np.testing.assert_array_equal(a, same)
    # The flipped resize is the mirror of the unflipped one: the same weights and pixels,
    # summed in another order (float32), so rounding may differ by 1 at a .5 tie.
    mirror = image_ops.resized_crop(jpeg, lambda *_: window, 48, flip=not flip).numpy()
    assert np.abs(a.astype(int) - mirror[:, ::-1]).max() <= 1
  assert len(windows) == 40  # a different crop per example
  assert 0 < sum(flips) < 40


def test_fast_resize_is_bilinear_without_antialiasing():
  jpeg = tf.constant(_encode(_photo(200, 300), "JPEG", quality=90))
  crop = tf.cast(image_ops.decode_rgb(jpeg)[13:163, 21:261], tf.float32)
  want = tf.saturate_cast(tf.round(tf.image.resize(crop, [48, 48])), tf.uint8).numpy()
  for flip in (False, True):
    got = image_ops.resized_crop(jpeg, lambda *_: (13, 21, 150, 240), 48, flip=flip,
                                 resize="fast").numpy()
    np.testing.assert_array_equal(got, want[:, ::-1] if flip else want)
  with pytest.raises(ValueError, match="antialias"):
    image_ops.train_image(jpeg, image_ops.example_key(0, 0, 0), 48, resize="area")


def _tiff(array, **kw):
  return _encode(array, "TIFF", **kw)  # little-endian ("II")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "png_named_jpeg", "gray_jpeg", "cmyk_jpeg",
                                 "gif", "bmp", "webp", "lossy_webp", "rgba_png", "gray_png",
                                 "palette_png", "tif", "tif_lzw", "gray16_big_endian_tif",
                                 "ppm", "pgm"])
def test_formats_decode_to_rgb(fmt):
  x = _photo(90, 130, seed=1)
  pil = Image.fromarray(x)
  gray = np.asarray(pil.convert("L"))
  data = {
      "jpeg": lambda: _encode(x, "JPEG", quality=90),
      "png": lambda: _encode(x, "PNG"),
      "png_named_jpeg": lambda: _encode(x, "PNG"),  # content decides, not the name
      "gray_jpeg": lambda: _encode(gray, "JPEG"),
      "cmyk_jpeg": lambda: (lambda b: (pil.convert("CMYK").save(b, "JPEG"), b.getvalue())[1])(
          io.BytesIO()),
      "gif": lambda: _encode(x, "GIF"),
      "bmp": lambda: _encode(x, "BMP"),
      "webp": lambda: _encode(x, "WEBP", lossless=True),
      "lossy_webp": lambda: _encode(x, "WEBP", quality=80),
      "rgba_png": lambda: _encode(np.concatenate([x, np.full((90, 130, 1), 7, np.uint8)], -1),
                                  "PNG"),
      "gray_png": lambda: _encode(gray, "PNG"),
      "palette_png": lambda: (lambda b: (pil.convert("P").save(b, "PNG"), b.getvalue())[1])(
          io.BytesIO()),
      "tif": lambda: _tiff(x),
      "tif_lzw": lambda: _tiff(x, compression="tiff_lzw"),
      "gray16_big_endian_tif": lambda: (lambda b: (Image.frombytes(  # "MM" byte order
          "I;16B", (130, 90), (gray.astype(">u2") * 200).tobytes()).save(b, "TIFF"),
                                                   b.getvalue())[1])(io.BytesIO()),
      "ppm": lambda: _encode(x, "PPM"),
      "pgm": lambda: _encode(gray, "PPM"),
  }[fmt]()
  key = image_ops.example_key(0, 0, 5)
  train = image_ops.train_image(tf.constant(data), key, 64)
  evaluation = image_ops.eval_image(tf.constant(data), 64, 72)
  assert train.shape == (64, 64, 3) and train.dtype == tf.uint8
  assert evaluation.shape == (64, 64, 3) and evaluation.dtype == tf.uint8
  # Exactly PIL's RGB conversion of the file (torchvision's loader): JPEG and lossy WebP
  # by the same libjpeg / libwebp code, lossless formats by definition, TIFF/PPM/PGM by
  # PIL itself.
  got = image_ops.decode_rgb(tf.constant(data)).numpy()
  np.testing.assert_array_equal(got, _pil_decoded(data), err_msg=fmt)


def test_eval_geometry_is_torchvision_resize_then_center_crop():
  fn = tf.function(lambda h, w: image_ops.eval_geometry(h, w, 224, 256))
  for h, w in [(375, 500), (500, 375), (256, 256), (224, 300), (333, 500), (1000, 10),
               (481, 640), (300, 301)]:
    (rh, rw), (top, left) = [tuple(int(v) for v in p) for p in fn(h, w)]
    short, long = min(h, w), max(h, w)
    new_long = int(256 * long / short)  # torchvision's _compute_resized_output_size
    want = (256, new_long) if h <= w else (new_long, 256)
    assert (rh, rw) == want
    assert (top, left) == (int(round((rh - 224) / 2.0)), int(round((rw - 224) / 2.0)))


def test_corrupt_images_raise():
  good = _encode(_photo(50, 60), "JPEG")
  key = image_ops.example_key(0, 0, 0)
  for bad in (good[:len(good) // 2], b"not an image at all", b"", b"II*\x00 not a tiff",
              b"P6\n3 3\n255\nxx"):
    # TensorFlow's decoders raise InvalidArgumentError; PIL's formats (TIFF, PPM/PGM),
    # decoded in Python, a ValueError (InvalidArgumentError inside tf.data).
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
      image_ops.train_image(tf.constant(bad), key, 32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
      image_ops.eval_image(tf.constant(bad), 32, 36)
