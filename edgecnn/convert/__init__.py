"""Conversion to TFLite (the TensorFlow side). TensorFlow is imported inside functions only."""

from edgecnn.convert.tflite import QUANTIZE_MODES, ConversionResult, convert

__all__ = ["QUANTIZE_MODES", "ConversionResult", "convert"]
