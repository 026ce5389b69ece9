"""edgecnn: train an image classifier, quantize it to int8 TFLite and prove the device model matches."""

__version__ = "0.1.0"
