"""Training (the TensorFlow side). TensorFlow is imported inside functions only."""

from edgecnn.train.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
