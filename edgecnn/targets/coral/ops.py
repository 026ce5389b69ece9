"""What the Coral Edge TPU and its last compiler (16.0.384591198) accept, as data.

Sources:

* Coral, "TensorFlow models on the Edge TPU", https://coral.ai/docs/edgetpu/models-intro/ ("Model requirements",
  "Supported operations", "Compiling"). The stored copy available while writing this gave only the page's
  opening, so the table text below comes from two mirrors of it:
  - Axis, ARTPEC-7 "Supported ops" (the ARTPEC-7 DLPU is an Edge TPU; its page reproduces Coral's current table
    text; the stored copy ends at ResizeBilinear): https://developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/supported-ops/
    and its "Optimization tips" (the general requirements, same wording):
    https://developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/optimization-tips/
  - an early (2019) copy of Coral's table, the text for Slice .. StridedSlice:
    https://github.com/dgist-datalab/Datalab_Intern/blob/master/Edge_TPU/convert_model_for_Edge_TPU.md
  The "Runtime version" column (``min_runtime``), the rows the 2019 copy lacks after ResizeBilinear (Rsqrt, Sum,
  SquaredDifference, Transpose, TransposeConv) and the Split limitation are from memory of the Coral page, not
  re-read from it: check them there before relying on them. Real 16.0 operation logs confirm
  SUB, SUM, STRIDED_SLICE, L2_NORMALIZATION, TANH, RESIZE_NEAREST_NEIGHBOR mapping to the TPU:
  https://github.com/jiri-kula/EfficientDet/blob/069975ed0b5fd09d680c4482960faee46702086a/model_edgetpu.log
* Op-version rejections: the google-coral issues cited next to each entry of :data:`OP_VERSION_REJECTIONS`.

Op names are the TFLite builtin operator names (as :mod:`edgecnn.model.flatbuffer` reads them), which are
also the names in the compiler's operator table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The last Edge TPU compiler; Google stopped releasing it in 2021.
LAST_COMPILER_VERSION = "16.0.384591198"

# What the table's rows rest on, from Coral's pages (kept as notes: the checks below implement them):
# - A model compiled by 16.0 with default options needs Edge TPU runtime 14 ("Package requires runtime version (14),
#   which is newer than this runtime version (13)", https://github.com/jsk-ros-pkg/coral_usb_ros/pull/78);
#   ``edgetpu_compiler -m 13`` targets an older runtime, losing the ops whose ``min_runtime`` is higher.
# - The general model requirements (Axis mirror; the 2019 copy says the same): tensor parameters are quantized
#   (8-bit fixed-point numbers; int8 or uint8); tensor sizes are constant at compile-time (no dynamic sizes); model
#   parameters (such as bias tensors) are constant at compile-time; tensors are either 1-, 2-, or 3-dimensional (if a
#   tensor has more than 3 dimensions, only the 3 innermost may have a size greater than 1); the model uses only the
#   operations supported by the Edge TPU.
# - How the compiler splits a model it cannot map entirely (models-intro "Compiling"; Axis "Optimization tips";
#   google-coral maintainer in https://github.com/google-coral/edgetpu/issues/461): by default it maps operations
#   until the first unsupported one and everything after it runs on the CPU, even supported operations, which the
#   operator table reports as "More than one subgraph is not supported". ``-a`` / ``--enable_multiple_subgraphs``
#   (an experimental flag without detailed documentation, per the maintainers in
#   https://github.com/google-coral/edgetpu/issues/356) maps later supported runs as further Edge TPU subgraphs;
#   ``-n`` / ``--num_segments N`` cuts the model into N separately compiled segments for pipelining over N Edge TPUs
#   (one output model per segment): it does not make unsupported operations run on the TPU.
# - Input/output types. The compiler takes int8 and uint8 model inputs/outputs (TF2 full-integer quantization
#   writes int8; uint8 I/O adds int<->int QUANTIZE ops, which map: "QUANTIZE 5 Mapped to Edge TPU" in
#   https://github.com/WongKinYiu/yolov7/pull/1672). A float32-I/O model still compiles, but its float->int8
#   QUANTIZE and int8->float DEQUANTIZE stay on the CPU ("Operation is otherwise supported, but not mapped due to
#   some unspecified limitation" / "Operation is working on an unsupported data type",
#   https://github.com/system-software-lab/nrf20/blob/master/convert/quantize/README.md), costing CPU time and, for
#   the input QUANTIZE, splitting the graph. Any float op inside the graph gives "Model not quantized".

# Machine-checkable constraint keys used in :data:`SUPPORTED_OPS`, and what each means.
CONSTRAINTS: dict[str, str] = {
    "no_fused_activation": "the op's fused_activation_function must be NONE",
    "concat_const_zero_pad": "a compile-time constant input is allowed only as one of 2 inputs, all zeros",
    "same_dilation": "dilation_h_factor == dilation_w_factor",
    "fc_default_weights": "weights_format is DEFAULT (not SHUFFLED4x16INT8)",
    "output_1d": "the output tensor is one-dimensional (only one dimension larger than 1)",
    "no_batch_dim": "the op does not reduce, pad, pack or split along the batch dimension (axis 0)",
    "mean_z_multiple_of_4": "a reduction over the channel (z) dimension needs a channel count divisible by 4",
    "alpha_1d": "PReLU alpha has only its innermost dimension larger than 1",
    "resize_3d": "input and output are 3-dimensional (at most 3 dimensions larger than 1)",
    "softmax_1d_max_16000": "the input has one dimension larger than 1, of at most 16,000 elements",
    "squeeze_leading_ones": "only leading size-1 dimensions are removed (no relayout)",
    "strides_1": "all strides are 1, ellipsis_mask == 0 and new_axis_mask == 0",
    "unidirectional": "unidirectional sequence LSTM only",
}


@dataclass(frozen=True)
class EdgeTpuOp:
    """One row of Coral's supported-operations table.

    Attributes:
        name: the TFLite builtin operator name (``CONV_2D``).
        table_name: the name in Coral's table (``Conv2d``).
        min_runtime: the table's "Runtime version": the lowest Edge TPU runtime that runs the op on the TPU,
            None for "All".
        limitation: the table's "Known limitations" text, "" for none.
        constraints: keys of :data:`CONSTRAINTS` that a checker can test on the model.
    """

    name: str
    table_name: str
    min_runtime: int | None
    limitation: str = ""
    constraints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A typo in the table would silently skip a check: every key must be one the pre-flight knows.
        unknown = [key for key in self.constraints if key not in CONSTRAINTS]
        if unknown:
            raise ValueError(f"{self.name}: unknown constraint keys {unknown}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "table_name": self.table_name,
            "min_runtime": self.min_runtime,
            "limitation": self.limitation,
            "constraints": list(self.constraints),
        }


_RESIZE = (
    "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation might not be mapped "
    "to the Edge TPU to avoid loss in precision."
)
_NO_FUSED = "No fused activation function."

_OPS: tuple[EdgeTpuOp, ...] = (
    EdgeTpuOp("ADD", "Add", None),
    EdgeTpuOp("AVERAGE_POOL_2D", "AveragePool2d", None, _NO_FUSED, ("no_fused_activation",)),
    EdgeTpuOp(
        "CONCATENATION",
        "Concatenation",
        None,
        "No fused activation function. If any input is a compile-time constant tensor, there must be only 2 "
        "inputs, and this constant tensor must be all zeros (effectively, a zero-padding op).",
        ("no_fused_activation", "concat_const_zero_pad"),
    ),
    EdgeTpuOp("CONV_2D", "Conv2d", None, "Must use the same dilation in x and y dimensions.", ("same_dilation",)),
    # Runtime <= 12 did not map dilated depthwise kernels at all; runtime >= 13 has the same rule as Conv2d.
    EdgeTpuOp(
        "DEPTHWISE_CONV_2D",
        "DepthwiseConv2d",
        None,
        "Must use the same dilation in x and y dimensions.",
        ("same_dilation",),
    ),
    EdgeTpuOp("EXPAND_DIMS", "ExpandDims", 13),
    EdgeTpuOp(
        "FULLY_CONNECTED",
        "FullyConnected",
        None,
        "Only the default format is supported for fully-connected weights. Output tensor is one-dimensional.",
        ("fc_default_weights", "output_1d"),
    ),
    EdgeTpuOp("L2_NORMALIZATION", "L2Normalization", None),
    EdgeTpuOp("LOGISTIC", "Logistic", None),
    EdgeTpuOp("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", 14, "Unidirectional LSTM only.", ("unidirectional",)),
    EdgeTpuOp("MAXIMUM", "Maximum", None),
    EdgeTpuOp("MAX_POOL_2D", "MaxPool2d", None, _NO_FUSED, ("no_fused_activation",)),
    EdgeTpuOp(
        "MEAN",
        "Mean",
        None,
        "No reduction in batch dimension. If a z-reduction, the z-dimension must be multiple of 4.",
        ("no_batch_dim", "mean_z_multiple_of_4"),
    ),
    EdgeTpuOp("MINIMUM", "Minimum", None),
    EdgeTpuOp("MUL", "Mul", None),
    EdgeTpuOp("PACK", "Pack", 13, "No packing in batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp("PAD", "Pad", None, "No padding in batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp(
        "PRELU",
        "PReLU",
        13,
        "Alpha must be 1-dimensional (only the innermost dimension can be >1 size). If using Keras PReLU with 4D "
        "input (batch, height, width, channels), then shared_axes must be [1,2] so each filter has only one set "
        "of parameters.",
        ("alpha_1d",),
    ),
    EdgeTpuOp("QUANTIZE", "Quantize", 13),
    EdgeTpuOp("REDUCE_MAX", "ReduceMax", 14, "Cannot operate on the batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp("REDUCE_MIN", "ReduceMin", 14, "Cannot operate on the batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp("RELU", "ReLU", None),
    EdgeTpuOp("RELU6", "ReLU6", None),
    EdgeTpuOp("RELU_N1_TO_1", "ReLUN1To1", None),
    EdgeTpuOp("RESHAPE", "Reshape", None, "Certain reshapes might not be mapped for large tensor sizes."),
    EdgeTpuOp("RESIZE_BILINEAR", "ResizeBilinear", None, _RESIZE, ("resize_3d",)),
    EdgeTpuOp("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighbor", None, _RESIZE, ("resize_3d",)),
    EdgeTpuOp("RSQRT", "Rsqrt", 14),
    EdgeTpuOp("SLICE", "Slice", None),
    EdgeTpuOp(
        "SOFTMAX",
        "Softmax",
        None,
        "Supports only 1D input tensor with a max of 16,000 elements.",
        ("softmax_1d_max_16000",),
    ),
    EdgeTpuOp("SPACE_TO_DEPTH", "SpaceToDepth", None),
    # The 2019 copy has no limitation for Split; the batch-dimension rule is from memory of the current page.
    EdgeTpuOp("SPLIT", "Split", None, "No splitting in batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp(
        "SQUEEZE",
        "Squeeze",
        None,
        "Supported only when input tensor dimensions that have leading 1s (that is, no relayout needed). For "
        "example input tensor with [y][x][z] = 1,1,10 or 1,5,10 is ok. But [y][x][z] = 5,1,10 is not supported.",
        ("squeeze_leading_ones",),
    ),
    EdgeTpuOp(
        "STRIDED_SLICE",
        "StridedSlice",
        None,
        "Supported only when all strides are equal to 1 (that is, effectively a Stride op), and with "
        "ellipsis-axis-mask == 0, and new-axis-max == 0.",
        ("strides_1",),
    ),
    EdgeTpuOp("SUB", "Sub", None),
    EdgeTpuOp("SUM", "Sum", 13, "Cannot operate on the batch dimension.", ("no_batch_dim",)),
    EdgeTpuOp("SQUARED_DIFFERENCE", "SquaredDifference", 14),
    EdgeTpuOp("TANH", "Tanh", None),
    EdgeTpuOp("TRANSPOSE", "Transpose", 14),
    EdgeTpuOp("TRANSPOSE_CONV", "TransposeConv", 13),
)

SUPPORTED_OPS: dict[str, EdgeTpuOp] = {op.name: op for op in _OPS}

# Common ops that are *not* in the table, with what the compiler or Coral said about them.
NOT_SUPPORTED: dict[str, str] = {
    # Table: "Operation is working on an unsupported data type" (float output of a float-I/O model).
    "DEQUANTIZE": "runs on the CPU (float output)",
    # "leakyRelu operation is not supported" (maintainer): https://github.com/google-coral/edgetpu/issues/597
    "LEAKY_RELU": "not supported; use ReLU or PReLU(shared_axes=[1, 2])",
    # Open feature request "Will EdgeTPU support LeakyRelu and Hardswish ops?":
    # https://github.com/google-coral/edgetpu/issues/272
    "HARD_SWISH": "not supported",
}


@dataclass(frozen=True)
class OpVersionRejection:
    """A public report of a compiler refusing a model because of one operator version."""

    compiler: str
    operator: str
    version: int
    url: str


# "ERROR: Didn't find op for builtin opcode 'OP' version 'N'. An older version of this builtin might be supported.
# Are you using an old TFLite binary with a newer model?" then "ERROR: Registration failed." and (15.0+)
# "Invalid model: x.tflite" / "Model could not be parsed": the whole model is refused, nothing is compiled.
# A builtin newer than the compiler's schema gives "ERROR: Op builtin_code out of range: 150. Are you using old
# TFLite binary with newer model?" instead (GELU is code 150).
OP_VERSION_REJECTIONS: tuple[OpVersionRejection, ...] = (
    OpVersionRejection("16.0", "CONV_2D", 6, "https://github.com/google-coral/edgetpu/issues/631"),
    OpVersionRejection("16.0", "TRANSPOSE_CONV", 4, "https://github.com/google-coral/edgetpu/issues/845"),
    OpVersionRejection("16.0", "QUANTIZE", 3, "https://github.com/google-coral/edgetpu/issues/879"),
    OpVersionRejection("16.0", "EXP", 2, "https://github.com/google-coral/libedgetpu/issues/71"),
    OpVersionRejection("15.0", "RSQRT", 2, "https://github.com/google-coral/edgetpu/issues/384"),
    OpVersionRejection("15.0", "REVERSE_V2", 3, "https://github.com/google-coral/edgetpu/issues/340"),
    OpVersionRejection("2.1", "TRANSPOSE_CONV", 3, "https://github.com/google-coral/edgetpu/issues/358"),
    OpVersionRejection("2.0", "RELU", 2, "https://github.com/google-coral/edgetpu/issues/34"),
    OpVersionRejection("2.0", "RESIZE_BILINEAR", 3, "https://github.com/google-coral/edgetpu/issues/45"),
)

# Highest operator version compiler 16.0 is not known to refuse: one below its reported rejection. Versions up to
# this are not promised to work; a higher one is known to be refused. Only ops with a public report are here.
# What each rejected version means (tensorflow/lite/tools/versioning/op_version.cc): CONV_2D v6 = grouped
# convolution (Keras Conv2D(groups>1)); TRANSPOSE_CONV v4 = a fused activation; QUANTIZE v3 = per-channel; EXP v2 =
# int8/int16 EXP.
MAX_OP_VERSIONS: dict[str, int] = {
    r.operator: r.version - 1
    for r in OP_VERSION_REJECTIONS
    if r.compiler == LAST_COMPILER_VERSION.split(".", 2)[0] + ".0"
}


def version_too_new(op: str, version: int) -> bool:
    """True when compiler 16.0 is known to refuse ``op`` at ``version`` (see :data:`MAX_OP_VERSIONS`)."""
    limit = MAX_OP_VERSIONS.get(op)
    return limit is not None and version > limit
