"""The runtime side: what a device installs and runs, with numpy, Pillow and one TFLite interpreter only.

Image folders (:mod:`.data`), the one preprocessing definition (:mod:`.preprocess`), quantization arithmetic
(:mod:`.quant`), the model bundle and its sidecar (:mod:`.bundle`), the interpreter layer (:mod:`.interpreter`),
the runner interface (:mod:`.runners`), classification (:mod:`.classify`) and the benchmark protocol
(:mod:`.bench`). Nothing here imports TensorFlow or the build side (an import-linter contract checks it).
"""
