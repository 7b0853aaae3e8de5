"""The trainer: `train.train_and_evaluate(config, workdir)` and the modules it is made of.

- `train.py`: one run, from its config to summary.json (`train_and_evaluate`);
- `loop.py`: the epochs of a set-up run (chunked steps, logging, evaluation, checkpoints);
- `run_setup.py`: the config checked and turned into data, method and data feed;
- `steps.py`: the jitted train and eval steps; `optim.py`: the optimizer and schedule;
- `feeds.py`: batches computed on the devices; `evaluation.py`: every test image once;
- `teachers.py`: a distillation run's teacher (loaded, folded, or trained first);
- `checkpoints.py`, `interrupts.py`: resuming, and stopping cleanly on SIGTERM/SIGINT;
- `workdir.py`: the workdir contract (one run per workdir; config.json, summary.json);
- `reporting.py`: metrics.jsonl, TensorBoard, progress lines, learning curves;
- `recipes.py`: the training recipes (`--config.recipe`);
- `identity.py`: a run's name, label and description from what it trains;
- `scoring.py`: a checkpoint scored on a split; `results.py`: Table 12 from finished runs.

Import each from its module (`from jointrd_jax.training import train`); this package
imports nothing itself.
"""
