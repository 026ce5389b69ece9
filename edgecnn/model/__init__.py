"""Reading a ``.tflite`` file without running it: its operators, tensors, parameters, MACs and size.

edgecnn's own bounds-checked reader of the FlatBuffers format and the TFLite schema (:mod:`.flatbuffer`), and the
graph summary built on it (:mod:`.graph`). Standard library only: no interpreter, no TensorFlow, no numpy.
"""
