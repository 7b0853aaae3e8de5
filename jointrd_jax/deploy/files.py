"""The names of the files in an export directory (one place, for every deploy module)."""

REPORT_FILE = "export.json"  # what was exported and how it was checked
PARAMS_FILE = "params.npz"  # the folded parameters, flat keys
LABELS_FILE = "labels.txt"  # class names, one per line in label order
SAVED_MODEL_DIR = "saved_model"  # TensorFlow SavedModel, uint8 images -> logits
TFLITE_FILE = "model.tflite"  # LiteRT (TFLite) fp32
TFLITE_INT8_FILE = "model_int8.tflite"  # LiteRT full-integer (int8) post-training quantized
ONNX_FILE = "model.onnx"  # ONNX fp32
ONNX_INT8_FILE = "model_int8.onnx"  # ONNX Runtime static (QDQ) int8 quantized
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
EXPORT_HINT = "the directory written by python -m experiments.export --workdir=RUN --out=DIR"
# The model package (deploy/package.py): weights in safetensors, the model card, the run's
# config, and the checksums of every file (written last).
SAFETENSORS_FOLDED = "weights_folded.safetensors"  # the folded params, params.npz's keys
SAFETENSORS_TRAINED = "weights_trained.safetensors"  # params/... and batch_stats/...
TRAINING_CONFIG_FILE = "training_config.json"  # the run's config.json, as recorded
CARD_FILE = "README.md"  # the model card (Hugging Face front matter)
CHECKSUMS_FILE = "SHA256SUMS"  # sha256sum format: every other file, sorted
