"""Two REAL JAX processes (jax.distributed on CPU, 4 devices each) stream one epoch of
an image folder: their shards of every global batch are disjoint and, side by side, are
exactly the single-process run's batches (bitwise), in the documented global order."""
import os
import re
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jointrd_jax.datasets import streamed  # noqa: E402
from jointrd_jax.datasets.synthetic_folder import make_image_folder  # noqa: E402
from jointrd_jax.sharding import make_mesh  # noqa: E402

SIZE, BATCH, SEED, EPOCH = 24, 16, 11, 3

WORKER = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    port, pid, folder, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, pid)
    from jointrd_jax.datasets import streamed
    from jointrd_jax.datasets.device_prefetch import local_rows
    from jointrd_jax.sharding import make_mesh
    mesh = make_mesh()
    assert jax.process_count() == 2 and mesh.devices.size == 8 and jax.local_device_count() == 4
    data = streamed.load("imagefolder:" + folder, mesh=mesh, image_size=%(size)d)

    def local(x):  # this process's rows of a global array, in order
      shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start)
      return np.concatenate([np.asarray(s.data) for s in shards])

    saved = {"rows": np.asarray(local_rows(mesh, %(batch)d))}
    for split, batches in (
        ("train", data.train_batches(seed=%(seed)d, epoch=%(epoch)d, batch_size=%(batch)d)),
        ("eval", data.eval_batches(batch_size=%(batch)d))):
      for i, batch in enumerate(batches):
        assert batch["image"].shape == (%(batch)d, %(size)d, %(size)d, 3)
        assert not batch["image"].is_fully_addressable
        for k, v in batch.items():
          saved[f"{split}_{i}_{k}"] = local(v)
    np.savez(out, **saved)
    print("done", pid)
""") % dict(size=SIZE, batch=BATCH, seed=SEED, epoch=EPOCH)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_split_each_global_batch(tmp_path):
  folder = make_image_folder(str(tmp_path / "data"), 3, 14, 5, seed=1,
                             height_range=(40, 90), width_range=(40, 90))  # 42 train, 15 val
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                 os.environ.get("XLA_FLAGS", ""))
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4".strip(),
             PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
  port = _free_port()
  outs = [tmp_path / f"p{i}.npz" for i in range(2)]
  procs = [subprocess.Popen([sys.executable, str(script), str(port), str(i), folder,
                             str(outs[i])], env=env, cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  assert all(p.returncode == 0 for p in procs), [log[-3000:] for log in logs]
  got = [dict(np.load(o)) for o in outs]
  assert [tuple(g["rows"]) for g in got] == [(0, 8), (8, 16)]

  # The single-process run (one device here), and its documented order.
  data = streamed.load(f"imagefolder:{folder}", mesh=make_mesh(jax.devices("cpu")[:1]),
                       image_size=SIZE)
  order = data.train_order(seed=SEED, epoch=EPOCH, batch_size=BATCH)
  ref = list(data.host_train_batches(seed=SEED, epoch=EPOCH, batch_size=BATCH))
  assert len(ref) == 42 // BATCH == 2
  for i, batch in enumerate(ref):
    for k in ("image", "label"):
      both = np.concatenate([got[0][f"train_{i}_{k}"], got[1][f"train_{i}_{k}"]])
      np.testing.assert_array_equal(both, batch[k])
    assert f"train_{len(ref)}_label" not in got[0]
  # Process p read examples order[:, 8p:8p+8]: disjoint, together the epoch's examples.
  ids = [order[:, 8 * p:8 * p + 8].ravel() for p in range(2)]
  assert not set(ids[0]) & set(ids[1])
  assert sorted(np.concatenate(ids)) == sorted(order.ravel())
  assert len(set(order.ravel())) == 2 * BATCH

  ref_eval = list(data.host_eval_batches(batch_size=BATCH))
  assert len(ref_eval) == 1
  for k in ("image", "label", "mask"):
    both = np.concatenate([got[0][f"eval_0_{k}"], got[1][f"eval_0_{k}"]])
    np.testing.assert_array_equal(both, ref_eval[0][k])
  assert np.concatenate([got[p]["eval_0_mask"] for p in range(2)]).sum() == 15
