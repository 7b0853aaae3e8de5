"""TFDS imagenet2012, streamed (datasets/imagenet_tfds.py through streamed.load).

Never downloads. A tiny imagenet2012 is PREPARED (tests/tfds_helpers.py) from fake
manual-download tars (3 synsets of real JPEGs) with TFDS's own builder, in about a second,
so the real TFRecord path runs: per-process even splits, seeded file and buffer shuffles,
resume, exact evaluation. Also `tfds.testing.mock_data` (random examples, no files) and the
one-line error when the data is not prepared.
"""
import jax
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")

from jointrd_jax.datasets import imagenet_tfds, streamed  # noqa: E402
from jointrd_jax.errors import UserError  # noqa: E402
from jointrd_jax.sharding import make_mesh  # noqa: E402
import tfds_helpers  # noqa: E402
from tfds_helpers import N_TRAIN, N_VAL, SIZE, SYNSETS  # noqa: E402


def _mesh1():
  return make_mesh(jax.devices("cpu")[:1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """data_dir of a prepared 3-class imagenet2012 (4 train shards)."""
  return tfds_helpers.prepare(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def data(prepared):
  return streamed.load("imagenet2012", mesh=_mesh1(), data_dir=prepared, image_size=SIZE,
                       eval_resize=36, shuffle_buffer=16)


def _host(data, **kw):
  return list(data.host_train_batches(**kw))


def _equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_not_prepared_is_one_line_and_never_downloads(tmp_path, monkeypatch):
  def no_download(*args, **kwargs):
    raise AssertionError("a download was attempted")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  for download in (False, True):
    with pytest.raises(UserError) as e:
      streamed.load("imagenet2012", mesh=_mesh1(), data_dir=str(tmp_path), download=download)
    msg = str(e.value)
    assert "\n" not in msg and "not prepared in" in msg and str(tmp_path) in msg
    assert "tfds build imagenet2012 --manual_dir=" in msg and "ILSVRC2012_img_train.tar" in msg
    assert "ILSVRC2012_img_val.tar" in msg and "image-net.org" in msg


def test_metadata(data):
  assert data.name == "imagenet2012" and data.num_classes == 1000
  assert data.class_names[:3] == SYNSETS  # sorted synsets, as torchvision's ImageFolder
  assert data.num_train == N_TRAIN and data.num_eval == N_VAL
  assert data.eval_split == "validation" and data.image_shape == (SIZE, SIZE, 3)
  assert data.steps_per_epoch(8) == N_TRAIN // 8


def test_epoch_is_deterministic_shuffled_and_covers_each_process_part(data):
  kw = dict(seed=4, epoch=1, batch_size=8)
  a = _host(data, **kw)
  assert len(a) == N_TRAIN // 8
  assert a[0]["image"].shape == (8, SIZE, SIZE, 3) and a[0]["image"].dtype == np.uint8
  assert a[0]["label"].dtype == np.int32 and set(np.concatenate([b["label"] for b in a])) <= {0, 1, 2}
  _equal(a, _host(data, **kw))
  b = _host(data, seed=4, epoch=2, batch_size=8)
  assert any(not np.array_equal(x["label"], y["label"]) for x, y in zip(a, b))
  # Encoded examples per (simulated) process: disjoint, together the whole split
  # (B = 10: each process's 30 examples make 6 local batches of 5, nothing dropped).
  seen = []
  for p in range(2):
    ds, steps = imagenet_tfds.train_elements(
        data._source.data, seed=4, epoch=1, batch_size=10, start_step=0,
        rows=(5 * p, 5 * p + 5), process_index=p, process_count=2, shuffle_buffer=16)
    elements = list(ds.as_numpy_iterator())
    assert steps == 6 and len(elements) == 30
    keys = [int(e["key"]) for e in elements]  # global positions: row 5p + q % 5 of batch q // 5
    assert keys == [q // 5 * 10 + 5 * p + q % 5 for q in range(30)]
    seen.append({e["source"] for e in elements})
  assert len(seen[0]) == len(seen[1]) == 30
  assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == N_TRAIN


def test_resume_threads_and_two_processes(prepared, data):
  kw = dict(seed=2, epoch=0, batch_size=8)
  full = _host(data, **kw)
  _equal(full[3:], _host(data, start_step=3, **kw))
  one_thread = streamed.load("imagenet2012", mesh=_mesh1(), data_dir=prepared, image_size=SIZE,
                             threads=1, num_parallel_calls=1, shuffle_buffer=16)
  _equal(full, _host(one_thread, **kw))
  part = _host(data, process_index=1, process_count=2, **kw)  # resumable per process too
  assert len(part) == (N_TRAIN // 2) // 4 and part[0]["image"].shape[0] == 4
  _equal(part[2:], _host(data, process_index=1, process_count=2, start_step=2, **kw))


@pytest.mark.parametrize("count", [1, 2])
def test_eval_covers_every_validation_image_once(data, count):
  batches = [list(data.host_eval_batches(batch_size=4, process_index=p, process_count=count))
             for p in range(count)]
  assert len({len(b) for b in batches}) == 1  # every process: the same number of batches
  mask = np.concatenate([b["mask"] for part in batches for b in part])
  assert mask.sum() == N_VAL
  images = np.concatenate([b["image"] for part in batches for b in part])[mask == 1]
  labels = np.concatenate([b["label"] for part in batches for b in part])[mask == 1]
  ref = tfds.load("imagenet2012", split="validation", data_dir=data._source.data.where,
                  download=False)
  want = sorted(int(ex["label"]) for ex in ref.as_numpy_iterator())
  assert sorted(labels.tolist()) == want
  assert len({im.tobytes() for im in images}) == N_VAL  # N_VAL distinct images


def test_under_mock_data(prepared):
  # mock_data replaces the examples by random ones (no files read); the metadata (split
  # sizes, labels) comes from `prepared`.
  with tfds.testing.mock_data(num_examples=N_TRAIN, data_dir=prepared):
    data = streamed.load("imagenet2012", mesh=make_mesh(jax.devices("cpu")[:2]),
                         data_dir="/nonexistent", image_size=SIZE, shuffle_buffer=8)
    batches = list(data.train_batches(seed=0, epoch=0, batch_size=16))
    evals = list(data.eval_batches(batch_size=8))
  assert len(batches) == N_TRAIN // 16
  assert batches[0]["image"].shape == (16, SIZE, SIZE, 3) and batches[0]["image"].dtype == np.uint8
  assert batches[0]["label"].dtype == np.int32
  assert sum(float(np.asarray(b["mask"]).sum()) for b in evals) == N_VAL
