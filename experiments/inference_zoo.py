"""`python -m experiments.inference_benchmark --zoo`: the zoo's students beside our plain
students on LiteRT and ONNX Runtime, in one run (the flags: `pydoc
experiments.inference_benchmark`; the measurement: `jointrd_jax/benchmarking/zoo_speed.py`).
"""
# pylint: disable=protected-access  # the flag parsers of experiments.inference_benchmark
import os
import time

from experiments import cli
from experiments import inference_benchmark as ib
from jointrd_jax.benchmarking import deployment, machine, pareto, tables, zoo_speed
from jointrd_jax.errors import UserError


def _zoo_args(args):
  """`(nets, runtimes, precisions, threads, batches)` of --zoo's flags, each checked."""
  for flag in ("shortcuts", "image_size"):
    if getattr(args, flag) not in (None, 0):
      raise UserError(f"--{flag} does not apply with --zoo: give ARCH:POLICY in --arch (32x32 "
                      "images).")
  if not args.verify:
    raise UserError("--noverify applies to --runs without --zoo (--zoo reads no export).")
  if args.runtime not in (None, *deployment.DEPLOYMENT_RUNTIMES):
    raise UserError(f"--runtime={args.runtime}: --zoo times "
                    f"{' or '.join(deployment.DEPLOYMENT_RUNTIMES)}.")
  runtimes = [args.runtime] if args.runtime else list(deployment.DEPLOYMENT_RUNTIMES)
  for runtime in runtimes:
    try:
      deployment.check_runtime(runtime)
    except UserError as e:
      raise UserError(f"--runtime={runtime}: {e}") from None
  width = 64 if args.width is None else args.width
  for flag, value, least in (("--width", width, 1), ("--num_classes", args.num_classes, 0),
                             ("--iters", args.iters, 1), ("--warmup", args.warmup, 0)):
    if value < least:
      raise UserError(f"{flag}={value} must be at least {least}.")
  try:
    nets = zoo_speed.parse_nets(args.arch or ",".join(zoo_speed.default_nets(width)), width,
                                args.num_classes or 100)
  except UserError as e:
    raise UserError(f"--arch: {e}") from None
  args.batch_sizes = args.batch_sizes or "1"
  batches = [int(b) for b in cli.csv(args.batch_sizes) if b.isdigit() and int(b) > 0]
  if len(batches) != len(cli.csv(args.batch_sizes)) or not batches:
    raise UserError(f"--batch_sizes={args.batch_sizes} must be positive integers, e.g. 1.")
  precisions = ib._csv("precisions", args.precisions or "fp32,int8", deployment.PRECISIONS)
  return nets, runtimes, precisions, ib._threads(args.threads or "1")[0], batches


def run(args, out):
  """`--zoo`: times the networks, prints the records and the table, writes --out."""
  nets, runtimes, precisions, threads, batches = _zoo_args(args)
  _check_out(args, runtimes)
  run_dirs = run_specs(args.runs) if args.runs else []
  facts = {net: zoo_speed.describe(net) for net in nets}
  runs = zoo_speed.read_runs(run_dirs, nets, facts) if run_dirs else []
  cli.setup_logging()
  mach = machine.host()
  head = (f"Machine: {machine.host_line(mach)} (at the start); batch {','.join(map(str, batches))}"
          f", {threads} thread(s), median of up to {args.iters} calls, random weights, folded; "
          f"{time.strftime('%Y-%m-%d')}.")
  print(f"# {head}", file=out, flush=True)
  show = lambda r: print(tables.json_line(r), file=out, flush=True)
  records = zoo_speed.run(nets, runtimes, precisions=precisions, threads=threads,
                          batches=batches, iters=args.iters, warmup=args.warmup,
                          time_budget_s=args.time_budget_s, log=ib._logger(out), on_record=show)
  table = tables.zoo_speed_table(nets, facts, records, runs)
  notes = [f"- {r['arch']}:{r['shortcuts']} {r['runtime']} {r['precision']} batch "
           f"{r['batch_size']}: {r['failed']}" for r in records if r["failed"]]
  text = "\n".join([head, f"Load at the end: {machine.load_average()}. params: the folded "
                    "network's; MMAC: multiply-accumulates per image; top-1: the runs' "
                    "final-epoch evaluation (fp32).", "", table] + ([""] + notes if notes else []))
  print("\n" + text, file=out, flush=True)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, zoo_speed.MD_FILE), "w") as f:
      f.write(f"# The zoo on the deployment runtimes\n\n```\n{text}\n```\n")
    pngs = zoo_speed.write_plots(args.out, runs, records, runtimes, mach["cpu"])
    print(f"wrote {', '.join([os.path.join(args.out, zoo_speed.MD_FILE)] + pngs)}", file=out)
  return records


def _check_out(args, runtimes) -> None:
  """--out (files it would replace need --overwrite; writable) or no --overwrite."""
  if not args.out:
    if args.overwrite:
      raise UserError("--overwrite applies with --out only.")
    return
  ib.check_out(args.out, [zoo_speed.MD_FILE] + [zoo_speed.PNG_FILE.format(runtime=r)
                                               for r in runtimes], args.overwrite)


def run_specs(text) -> list:
  """The run directories of `--runs` (RUN,...): --zoo reads their summaries, no export."""
  if "=" in text:
    raise UserError(f"--runs={text}: --zoo reads each run's summary.json, not its export; "
                    "give RUN,... without =EXPORT_DIR.")
  return [run for run, _ in pareto.parse_runs(text)]
