"""Conversion to TFLite (the TensorFlow side). TensorFlow is imported inside functions only."""

from edgecnn.convert.tflite import IO_TYPES, QUANTIZE_MODES, ConversionResult, convert

__all__ = ["IO_TYPES", "QUANTIZE_MODES", "ConversionResult", "convert"]
