"""What the benchmark scripts print besides their JSON lines: the tables, and the training
time estimates of the step benchmark."""
import json

from jointrd_jax.benchmarking.train_step import RECIPE


def json_line(record: dict) -> str:
  """One record as the scripts print it: one JSON object, keys sorted."""
  return json.dumps(record, sort_keys=True)


def _fmt(v, spec):
  width = int(spec.split(".")[0])
  return f"{'-':>{width}}" if v is None else format(v, spec)


def train_step_table(results) -> str:
  """`experiments.benchmark`'s table: one row per (method, batch size)."""
  head = (f"{'method':<17}{'batch':>6} {'dtype':<9}{'img/s':>10}{'step_ms':>9}{'compile_s':>10}"
          f"{'xla_GF/img':>11}{'ref_GF/img':>11}{'TFLOP/s':>9}{'%peak':>7}{'mem_MiB':>9}"
          f"{'est_min':>10}")
  lines = [head, "-" * len(head)]
  for r in results:
    mem = r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] else None
    lines.append(
        f"{r['method']:<17}{r['batch']:>6} {r['dtype']:<9}{r['images_per_s']:>10.1f}"
        f"{r['step_ms']:>9.2f}{r['compile_s']:>10.1f}{_fmt(r['xla_gflop_per_image'], '11.3f')}"
        f"{_fmt(r['ref_gflop_per_image'], '11.2f')}{_fmt(r['tflops_per_s'], '9.3f')}"
        f"{_fmt(r['pct_peak'], '7.1f')}{_fmt(mem, '9.1f')}"
        f"{_fmt(r['est_200_epochs_min'] or r['est_imagenet_epoch_min'], '10.1f')}")
  return "\n".join(lines)


def estimates(results) -> str:
  """One line per method: the 200-epoch recipe's training time at the batch-128
  throughput (or, without a batch-128 case, at each measured batch size); one ImageNet
  epoch for the ImageNet archs."""
  lines = []
  for m in dict.fromkeys(r["method"] for r in results):
    rs = [r for r in results if r["method"] == m]
    at128 = [r for r in rs if r["batch"] == RECIPE["batch_size"]]
    for r in at128 or rs:
      rate = f"{r['images_per_s']:.{0 if r['images_per_s'] >= 100 else 2}f} img/s"
      if r["est_200_epochs_min"] is None:
        lines.append(
            f"# estimate {m}: one ImageNet epoch (1,281,167 images) at {rate} (measured at "
            f"batch {r['batch']}) = {r['est_imagenet_epoch_min']:.1f} min of training steps; "
            "evaluation (~3 %), compilation and checkpoints excluded")
        continue
      lines.append(
          f"# estimate {m}: a full 200-epoch CIFAR run (200 x 390 steps x 128 images) at "
          f"{rate} (measured at batch {r['batch']}) = "
          f"{r['est_200_epochs_min']:.1f} min of training steps; evaluation, compilation, "
          "checkpoints and teacher training excluded")
  return "\n".join(lines)


def inference_table(results) -> str:
  """`experiments.inference_benchmark`'s table: one row per (network, batch size)."""
  head = (f"{'network':<8} {'shortcuts':<10} {'batch':>5} {'lat ms':>9} {'img/s':>8} "
          f"{'XLA temp MiB':>12} {'XLA a+o+t MiB':>13} {'sc/total':>8} {'sc/peak':>8} "
          f"{'peak MiB':>9} {'w/o sc MiB':>10}")
  lines = [head, "-" * len(head)]
  mib = lambda b: b / 2 ** 20
  for r in results:
    m, a, b = r["xla_memory"], r["analytic"], r["batch_size"]
    temp = f"{mib(m['temp_size_in_bytes']):12.1f}" if "temp_size_in_bytes" in m else f"{'n/a':>12}"
    peak = m.get("xla_peak_live_bytes_estimate")
    peak = f"{mib(peak):13.1f}" if peak is not None else f"{'n/a':>13}"
    lines.append(
        f"{r['network']:<8} {r['shortcuts']:<10} {b:>5} {r['latency_ms_median']:9.2f} "
        f"{r['images_per_s']:8.1f} {temp} {peak} {a['shortcut_share_of_total']:8.3f} "
        f"{a['shortcut_share_of_peak']:8.3f} {mib(4 * b * a['peak_live']):9.1f} "
        f"{mib(4 * b * a['peak_live_without_shortcut_memory']):10.1f}")
  return "\n".join(lines)


def runtime_table(results) -> str:
  """`experiments.inference_benchmark --runtime=litert|onnxruntime`'s table: one row per
  case (network, precision, threads, batch size)."""
  head = (f"{'network':<8} {'shortcuts':<10} {'prec':<5} {'thr':>3} {'batch':>5} "
          f"{'median ms':>10} {'p90 ms':>9} {'img/s':>8} {'file MiB':>8} {'peak MiB':>8} "
          f"{'load ms':>8}")
  lines = [head, "-" * len(head)]
  for r in results:
    peak = r["memory"]["peak_rss_growth_bytes"]
    lines.append(
        f"{r['network']:<8} {r['shortcuts']:<10} {r['precision']:<5} {r['threads']:>3} "
        f"{r['batch_size']:>5} {r['latency_ms_median']:10.2f} {r['latency_ms_p90']:9.2f} "
        f"{r['images_per_s']:8.1f} {r['model_bytes'] / 2**20:8.2f} "
        f"{_fmt(None if peak is None else peak / 2**20, '8.1f')} {r['load_ms']:8.1f}")
  return "\n".join(lines)


def zoo_speed_table(nets, facts, records, runs) -> str:
  """`experiments.inference_benchmark --zoo`'s table: one row per (network, batch size),
  the median ms of each (runtime, precision) timed, and the top-1 of the runs of that
  network."""
  cols = list(dict.fromkeys((r["runtime"], r["precision"]) for r in records))
  short = {"litert": "LiteRT", "onnxruntime": "ORT"}
  head = (f"{'network':<19}{'batch':>6}{'params':>12}{'MMAC':>9}"
          + "".join(f"{short[rt] + ' ' + p + ' ms':>17}" for rt, p in cols) + "  top-1 %")
  lines = [head, "-" * len(head)]
  by = {(r["arch"], r["shortcuts"], r["batch_size"], r["runtime"], r["precision"]): r
        for r in records}
  for batch in dict.fromkeys(r["batch_size"] for r in records):
    for net in nets:
      f = facts[net]
      cells = []
      for rt, p in cols:
        r = by.get((net.arch, net.shortcuts, batch, rt, p))
        cells.append("-" if r is None else "failed" if r["failed"]
                     else f"{r['latency_ms_median']:.2f}")
      top1 = "; ".join(f"{r['top1']:.2f} ({r['label']})" for r in runs if r["net"] == net)
      lines.append(f"{net.arch + ':' + net.shortcuts:<19}{batch:>6}{f['num_params']:>12,}"
                   f"{f['macs'] / 1e6:>9.2f}" + "".join(f"{c:>17}" for c in cells)
                   + f"  {top1 or '-'}")
  return "\n".join(lines)
