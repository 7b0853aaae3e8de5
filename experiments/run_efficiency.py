r"""Whole-run efficiency: a short real run of the trainer against its bare step.

  python -m experiments.run_efficiency [--method=jointrd] [--arch=resnet10] [--width=16] \
      [--batch_size=128] [--epochs=3] [--train_size=10240] [--test_size=2000]

Runs `train.train_and_evaluate` as a user would (synthetic data, the default evaluation
every epoch, checkpoints and metrics as configured; a distillation method gets a random
frozen teacher written as a run beforehand, so no teacher is trained), then times the bare
train step of the same method, network and batch (`experiments.benchmark`, `--data=fixed`:
the jitted step on one device-resident batch) and the trainer's own dispatch of it
(`--data=trainer`: the augmented batch computed inside the step, `steps_per_dispatch` steps
per call), each before and after the run, averaged, and reports

  efficiency = steps x bare step time / (run wall time - compilation),

i.e. the run's training rate as a fraction of the bare step's, and where the rest went:
the input and dispatch (the two benchmarks' difference), the training loop's time beyond
that (host work between steps, and the machine's drift between the measurements: on a
shared machine the speed changes by several percent from minute to minute), and the run's
`summary.json` `time_s` (evaluation, the frozen teacher's one evaluation, checkpoint saves;
metric records and log lines happen inside the loop), and the remainder (each epoch's
start, the summary). Prints one JSON line and a small table.
"""
import json
import os
import sys
import tempfile
import time


def parse_args(argv):
  from experiments import cli  # pylint: disable=g-import-not-at-top
  p = cli.ArgumentParser("python -m experiments.run_efficiency", __doc__)
  p.add_argument("--method", default="jointrd", help="the method to run")
  p.add_argument("--arch", default="resnet10", help="network (CIFAR archs)")
  p.add_argument("--width", type=int, default=16, help="stem width")
  p.add_argument("--batch_size", type=int, default=128, help="global batch size")
  p.add_argument("--epochs", type=int, default=3, help="epochs of the run")
  p.add_argument("--train_size", type=int, default=10240, help="synthetic training images")
  p.add_argument("--test_size", type=int, default=2000, help="synthetic test images")
  p.add_argument("--num_classes", type=int, default=100, help="classes")
  p.add_argument("--steps_per_dispatch", type=int, default=0, help="the trainer's "
                 "steps_per_dispatch (0 = automatic)")
  p.add_argument("--bench_steps", type=int, default=60, help="timed steps of the bare step")
  p.add_argument("--workdir", default="", help="where the run goes (default: a temp dir)")
  return p.parse_args(argv)


def _config(args, teacher_dir: str):
  from configs import default  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  c.method = args.method
  c.dataset = "synthetic"
  c.synthetic.update(dict(train_size=args.train_size, test_size=args.test_size,
                          num_classes=args.num_classes))
  c.model.update(dict(arch=args.arch, width=args.width))
  c.num_epochs = args.epochs
  c.batch_size = args.batch_size
  c.teacher.checkpoint = teacher_dir
  c.steps_per_dispatch = args.steps_per_dispatch
  return c


def _random_teacher(config, run_dir: str) -> None:
  """A frozen teacher run with random weights (its values do not change the cost)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jointrd_jax import checkpoints, models, train, workdir  # pylint: disable=g-import-not-at-top
  t = train.teacher_config(config)
  net = train.build_method(t, config.synthetic.num_classes).student
  variables = jax.device_get(models.init(net, jax.random.key(1), (32, 32, 3)))
  checkpoints.save_network(run_dir, net, variables, image_shape=(32, 32, 3),
                           config_dict=workdir.config_to_dict(t))


def _time_step(args, data: str) -> dict:
  """The benchmark's record of the method's step: `fixed` the bare step, `trainer` the
  trainer's dispatch of it."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  from jointrd_jax import sharding  # pylint: disable=g-import-not-at-top
  bench = benchmark.parse_args([
      f"--methods={args.method}", f"--arch={args.arch}", f"--width={args.width}",
      f"--num_classes={args.num_classes}", f"--batch_sizes={args.batch_size}",
      f"--steps={args.bench_steps}", "--steps_per_block=10", "--warmup=3", f"--data={data}",
      f"--steps_per_dispatch={args.steps_per_dispatch}"])
  return benchmark.run_case(args.method, args.batch_size, bench, sharding.make_mesh())


def _step_rates(args) -> dict:
  """images/s of the bare step and of the trainer's dispatch, measured back to back."""
  return {d: _time_step(args, d) for d in ("fixed", "trainer")}


def main(argv=None) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  from jointrd_jax import methods, reporting, train  # pylint: disable=g-import-not-at-top
  reporting.use_one_log_format()  # the trainer's lines as experiments.main prints them
  root = args.workdir or tempfile.mkdtemp(prefix="run_efficiency_")
  teacher_dir = ""
  if methods.get_spec(args.method).needs_teacher:
    teacher_dir = os.path.join(root, "random_teacher")
    _random_teacher(_config(args, ""), teacher_dir)
  config = _config(args, teacher_dir)
  # The steps are timed before and after the run and averaged: on a shared machine the
  # speed drifts, and the comparison should not depend on when it was measured.
  before = _step_rates(args)
  t0 = time.perf_counter()
  summary = train.train_and_evaluate(config, os.path.join(root, "run"))
  outer_wall = time.perf_counter() - t0
  after = _step_rates(args)
  rate = {d: (before[d]["images_per_s"] + after[d]["images_per_s"]) / 2 for d in before}
  bare = after["fixed"]

  steps = summary["epochs_done"] * (args.train_size // args.batch_size)
  step_s = args.batch_size / rate["fixed"]
  dispatch_s = args.batch_size / rate["trainer"]
  wall, compile_s = summary["wall_time_s"], summary["compile_s"]
  run_s = wall - compile_s
  spent = dict(summary["time_s"])
  loop_s = spent["train_steps"]  # the training loop, log steps included
  record = {
      "method": args.method, "arch": args.arch, "width": args.width,
      "batch": args.batch_size, "epochs": summary["epochs_done"], "steps": steps,
      "device_kind": bare["device_kind"], "platform": bare["platform"],
      "bare_step_images_per_s": rate["fixed"], "dispatch_images_per_s": rate["trainer"],
      "bare_step_images_per_s_before_after": [before["fixed"]["images_per_s"],
                                              after["fixed"]["images_per_s"]],
      "bare_steps_s": steps * step_s, "run_wall_s": wall, "compile_s": compile_s,
      "startup_and_load_s": outer_wall - wall,
      "run_images_per_s": steps * args.batch_size / run_s,
      "efficiency": steps * step_s / run_s,
      "loop_share": loop_s / run_s,
      "time_s": spent,
  }
  parts = {
      "bare": steps * step_s,
      "input_dispatch": steps * (dispatch_s - step_s),
      "loop_beyond_dispatch": loop_s - steps * dispatch_s,
      "eval": spent["eval"], "checkpoint": spent["checkpoint"],
      "rest": run_s - loop_s - spent["eval"] - spent["checkpoint"],
  }
  record["parts_s"] = parts
  print(json.dumps(record, sort_keys=True))
  print(f"# {args.method} {args.arch} width {args.width}, batch {args.batch_size}, "
        f"{record['epochs']} epochs x {steps // max(record['epochs'], 1)} steps on "
        f"{bare['platform']} {bare['device_kind']}")
  b0, b1 = record["bare_step_images_per_s_before_after"]
  print(f"# bare step {rate['fixed']:.0f} img/s ({b0:.0f} before the run, {b1:.0f} after), "
        f"the trainer's dispatch {rate['trainer']:.0f} img/s; the run trained at "
        f"{record['run_images_per_s']:.0f} img/s = {100 * record['efficiency']:.1f} % of the "
        f"bare step (wall {wall:.1f} s, compile {compile_s:.1f} s excluded); its training "
        f"loop took {100 * record['loop_share']:.1f} % of that time")
  rows = [("bare steps (steps x bare step time)", parts["bare"]),
          ("input in the step + dispatch (benchmarks)", parts["input_dispatch"]),
          ("training loop beyond that (drift, host)", parts["loop_beyond_dispatch"]),
          ("  of which metric records and log lines", spent["log"]),
          ("evaluation, every epoch", parts["eval"]),
          ("  of which the frozen teacher, once", spent["teacher_eval"]),
          ("checkpoint saves", parts["checkpoint"]),
          ("rest: epoch starts, the summary", parts["rest"])]
  for name, v in rows:
    print(f"#   {name:<42}{v:8.2f} s  {100 * v / run_s:6.1f} %")
  return record


if __name__ == "__main__":
  main()
