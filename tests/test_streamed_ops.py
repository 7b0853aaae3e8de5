"""ImageNet transforms (datasets/image_ops.py): torchvision's RandomResizedCrop sampler,
fused JPEG decode-and-crop vs the general decoder, image formats, eval geometry."""
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


def test_jpeg_fused_crop_equals_general_decoder():
  x = _photo(120, 170)
  jpeg = _encode(x, "JPEG", quality=95)
  window = lambda h, w: (tf.constant(13), tf.constant(21), tf.constant(80), tf.constant(97))
  fused = image_ops.decode_window(tf.constant(jpeg), window).numpy()
  full = tf.io.decode_image(jpeg, channels=3).numpy()[13:93, 21:118]
  assert fused.shape == (80, 97, 3)
  # The same libjpeg output, except chroma upsampling at the window's edges.
  assert np.abs(fused.astype(int) - full).mean() < 0.5


@pytest.mark.parametrize("fmt", ["png", "png_named_jpeg", "gray_jpeg", "cmyk_jpeg", "gif",
                                 "bmp", "webp", "rgba_png", "gray_png"])
def test_formats_decode_to_rgb(fmt):
  x = _photo(90, 130, seed=1)
  pil = Image.fromarray(x)
  data = {
      "png": lambda: _encode(x, "PNG"),
      "png_named_jpeg": lambda: _encode(x, "PNG"),  # content decides, not the name
      "gray_jpeg": lambda: _encode(np.asarray(pil.convert("L")), "JPEG"),
      "cmyk_jpeg": lambda: (lambda b: (pil.convert("CMYK").save(b, "JPEG"), b.getvalue())[1])(
          io.BytesIO()),
      "gif": lambda: _encode(x, "GIF"),
      "bmp": lambda: _encode(x, "BMP"),
      "webp": lambda: _encode(x, "WEBP", lossless=True),
      "rgba_png": lambda: _encode(np.concatenate([x, np.full((90, 130, 1), 7, np.uint8)], -1),
                                  "PNG"),
      "gray_png": lambda: _encode(np.asarray(pil.convert("L")), "PNG"),
  }[fmt]()
  key = image_ops.example_key(0, 0, 5)
  train = image_ops.train_image(tf.constant(data), key, 64)
  evaluation = image_ops.eval_image(tf.constant(data), 64, 72)
  assert train.shape == (64, 64, 3) and train.dtype == tf.uint8
  assert evaluation.shape == (64, 64, 3) and evaluation.dtype == tf.uint8
  # Same pixels as PIL's RGB conversion of the decoded file, up to JPEG/CMYK rounding.
  ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
  got = image_ops.decode_rgb(tf.constant(data)).numpy().astype(np.float32)
  assert got.shape == ref.shape
  assert np.abs(got - ref).mean() < 1.0, fmt


def test_train_image_is_keyed_and_flip_is_a_mirror():
  jpeg = tf.constant(_encode(_photo(200, 300), "JPEG", quality=90))
  outs = {}
  for i in range(40):
    key = image_ops.example_key(1, 2, i)
    a = image_ops.train_image(jpeg, key, 48).numpy()
    np.testing.assert_array_equal(a, image_ops.train_image(jpeg, key, 48).numpy())
    u = image_ops.crop_uniforms(key)
    window = image_ops.random_resized_crop_window(200, 300, u)
    outs[i] = (a, tuple(int(v) for v in window), bool(image_ops.flip_of(u)))
  assert len({w for _, w, _ in outs.values()}) == 40  # a different crop per example
  flips = [f for _, _, f in outs.values()]
  assert 0 < sum(flips) < 40
  # A flipped example is the mirror image of the same crop resized.
  for a, (top, left, h, w), flip in outs.values():
    crop = tf.io.decode_jpeg(jpeg, channels=3)[top:top + h, left:left + w]
    ref = tf.saturate_cast(tf.round(tf.image.resize(tf.cast(crop, tf.float32), [48, 48])),
                           tf.uint8).numpy()
    ref = ref[:, ::-1] if flip else ref
    assert np.abs(a.astype(int) - ref).mean() < 1.0


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


def test_eval_image_matches_pil_resize_and_center_crop():
  x = _photo(375, 500, seed=3)
  jpeg = _encode(x, "PNG")  # lossless: compare the transforms, not the codecs
  got = image_ops.eval_image(tf.constant(jpeg), 224, 256).numpy().astype(np.float32)
  resized = Image.fromarray(x).resize((341, 256), Image.BILINEAR)  # PIL: antialiased
  ref = np.asarray(resized, np.float32)[16:240, 58:282]
  assert np.abs(got - ref).mean() < 1.0 and np.abs(got - ref).max() <= 8


def test_corrupt_images_raise():
  good = _encode(_photo(50, 60), "JPEG")
  key = image_ops.example_key(0, 0, 0)
  for bad in (good[:len(good) // 2], b"not an image at all", b""):
    with pytest.raises(tf.errors.InvalidArgumentError):
      image_ops.train_image(tf.constant(bad), key, 32)
    with pytest.raises(tf.errors.InvalidArgumentError):
      image_ops.eval_image(tf.constant(bad), 32, 36)


def test_train_antialias_matches_pil():
  x = _photo(300, 400, seed=4)
  png = tf.constant(_encode(x, "PNG"))
  for i in range(5):
    key = image_ops.example_key(0, 1, i)
    u = image_ops.crop_uniforms(key)
    top, left, h, w = (int(v) for v in image_ops.random_resized_crop_window(300, 400, u))
    ref = np.asarray(Image.fromarray(x[top:top + h, left:left + w]).resize((64, 64),
                                                                            Image.BILINEAR))
    ref = ref[:, ::-1] if bool(image_ops.flip_of(u)) else ref
    got = image_ops.train_image(png, key, 64, antialias=True).numpy()
    assert np.abs(got.astype(float) - ref).mean() < 1.0
