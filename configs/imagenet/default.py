"""The ImageNet recipe of the paper's release, shared by every method's ImageNet config.

    python -m experiments.main --config=configs/imagenet/resnet.py --workdir=runs/in_resnet50 \
        --config.dataset=imagefolder:/data/imagenet     # or imagenet2012 (TFDS)

The same keys as configs/default.py (so --config.dataset, --config.num_epochs,
--config.batch_size, ... work alike), with ImageNet's values: ResNet-50 with the ImageNet
stem (`imagenet_resnet50`), 1000 classes read from the data, 120 epochs, global batch 512,
SGD Nesterov 0.9, lr 0.2 x0.1 every 30 epochs, weight decay 1e-4 (not on Dirac a, b; the
`jointrd` recipe; `--config.recipe=torchvision` for torchvision's, jointrd_jax/recipes.py),
JointRD's hybrid weight decaying to dc = 5e-3 over half the run, 60 epochs (`JOINTRD_DC`,
`JOINTRD_DECAY_FRACTION`, set by the files of the methods with a jointrd term);
random-resized crops to 224 with flips for training, resize 256 + centre crop 224 for
evaluation, all 50,000 validation images. `:smoke` is a tiny network on a generated folder
of JPEGs (seconds; `--config.dataset=imagefolder:PATH` works with it too).
"""
from configs import default as cifar
from configs import recipe_keys

JOINTRD_DC = 5e-3  # JointRD's hybrid weight's floor on ImageNet (0.5 on CIFAR)
JOINTRD_DECAY_FRACTION = 0.5  # its horizon: 60 of the 120 epochs (CIFAR: 0.3 of 200)


def get_config(arg: str = ""):
  if arg not in cifar.ARGS:
    raise ValueError(f"unknown config argument {arg!r}; append nothing or ':smoke' to the file "
                     "name (e.g. --config=configs/imagenet/jointrd.py:smoke)")
  c = cifar.get_config()
  c.dataset = "imagenet2012"  # or imagefolder:PATH (train/<class>/*, val/<class>/*)
  c.download = False          # ImageNet is downloaded by hand (image-net.org)
  c.model.arch = "imagenet_resnet50"
  # The recipe (jointrd_jax/recipes.py): 'jointrd' (the release's) or 'torchvision' (90
  # epochs, batch 256, SGD momentum 0.9, lr 0.1 x0.1 every 30 epochs, weight decay 1e-4).
  recipe_keys.install(c, "imagenet")
  c.eval_batch_size = 1000
  c.log_every_steps = 100
  c.checkpoint_every_epochs = 1  # an ImageNet epoch is long: lose at most one
  c.eval_hybrids_every_epochs = 5
  c.streamed.update(dict(image_size=224, eval_resize=256))
  if arg == "smoke":
    # A generated folder of JPEGs (varied sizes, 10 classes) streamed through the real
    # ImageNet pipeline, at 64x64 with a tiny network: seconds on a laptop CPU.
    c.dataset = "synthetic"
    c.synthetic.update(dict(train_size=320, test_size=100, num_classes=10))
    c.model.update(dict(arch="imagenet_resnet10", width=16))
    c.streamed.update(dict(image_size=64, eval_resize=73))
    c.num_epochs = 2
    c.batch_size = 32
    c.eval_batch_size = 104  # a multiple of 8 devices; the padding is masked
    c.optimizer.update(dict(learning_rate=0.03, lr_drop_at=(0.5, 0.75)))
    c.log_every_steps = 5
    c.eval_hybrids_every_epochs = 1
  return c
