"""What the commands do, composed from the layers below: one function per command that needs more than one side
(a ``.keras`` reference is opened through the build side, a ``.tflite`` through the runtime side or a target).
"""
