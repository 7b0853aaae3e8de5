"""What the benchmark scripts of `experiments/` measure, as library code: the scripts only
parse flags, call these and print. One module per concern:

- `machine`: a description of the machine (devices, CPU, cores, load) for every record;
- `timing`: timing loops (blocks of steps, round-robin calls, best passes), percentiles;
- `xla_analysis`: XLA's cost and memory analyses of a compiled program, device memory;
- `random_weights`: networks, training states and teacher runs with random weights
  (the cost of a step does not depend on the values);
- `train_step`: one training-step case timed as the trainer runs it (`experiments.benchmark`);
- `inference`: the folded networks' latency and the analytic activation-memory model
  (`experiments.inference_benchmark`);
- `deployment`: the folded networks converted for LiteRT / ONNX Runtime (fp32, int8; cached)
  and timed case by case (`experiments.inference_benchmark --runtime=...`);
- `runtime_case`: one such case measured in a fresh process (latency, peak RSS growth);
- `pareto`: trained runs and their exports as accuracy-against-latency points, the front,
  `pareto.png` / `pareto.md` (`experiments.inference_benchmark --runs=...`);
- `run_efficiency`: a real run of the trainer against its benchmarked step
  (`experiments.run_efficiency`);
- `input_throughput`: the input pipelines' images/s (`experiments.data_throughput`);
- `zoo_cost`: the distillation zoo's forward cost per image (parameters, XLA FLOPs, MACs
  as the PyTorch counters count them, the published figures; `experiments.benchmark --zoo`);
- `zoo_speed`: the zoo's students beside our plain students on LiteRT and ONNX Runtime,
  with the accuracy of trained runs (`experiments.inference_benchmark --zoo`);
- `tables`: the JSON lines and tables the scripts print.

Layering: above `train` (like `sweep`): these modules may import the trainer; nothing in
the trainer imports them. No module imports TensorFlow at import time, and `train_step`,
`inference` and `random_weights` never do (the benchmarks must run without it);
`deployment` imports it to convert models.
"""
