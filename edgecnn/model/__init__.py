"""Reading a ``.tflite`` file without running it: its operators, tensors, parameters, MACs and size.

Needs nothing but numpy: no interpreter, no TensorFlow.
"""
