"""The TensorFlow side: training, conversion to TFLite, diagnosis, recovery and quantization-aware training.

TensorFlow is imported inside functions only, so importing these modules stays cheap; nothing on the runtime
side imports them (an import-linter contract checks it).
"""
