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
