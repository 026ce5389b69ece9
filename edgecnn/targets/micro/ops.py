"""The operations TensorFlow Lite Micro has kernels for, and the resolver method that registers each.

A firmware registers only the kernels its model uses, through ``tflite::MicroMutableOpResolver<N>``: one ``AddXxx()``
call per operation. :data:`MICRO_OPS` maps each builtin operation (named as :mod:`edgecnn.model.flatbuffer` names it)
to that method, so the C export can write the resolver and ``check --target micro`` can name what TFLM lacks
before anything is loaded.

Source: tensorflow/tflite-micro ``tensorflow/lite/micro/micro_mutable_op_resolver.h``, every ``TfLiteStatus
AddXxx()`` that calls ``AddBuiltin(BuiltinOperator_XXX, ...)``. The stored upstream copy (commit 933f830, 2022)
lacks the methods added since (BATCH_MATMUL, DIV, EMBEDDING_LOOKUP, REDUCE_MIN, REVERSE_V2, SELECT_V2...); those
come from a current copy of the same header (AmbiqAI/helia-rt, which tracks upstream; its own AddGelu, which
upstream does not have, is left out). Every entry was checked against the kernels compiled into the tflite-micro
wheel edgecnn runs (its ``Register_XXX`` symbols, version 0.dev20261023182759).
"""

from __future__ import annotations

from collections.abc import Iterable

MICRO_OPS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}
"""Builtin operation name → the ``MicroMutableOpResolver`` method that registers its kernel."""

MICRO_CUSTOM_OPS: dict[str, str] = {
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}
"""Custom operations (by custom code) that TFLM ships kernels for and registers by name in the same header.

Its audio front-end ops (SignalWindow, SignalRfft...) and the Ethos-U NPU op are left out: they need libraries
and hardware a CNN image classifier never uses, and no converter edgecnn drives emits them.
"""


def _method(op: str) -> str | None:
    return MICRO_OPS.get(op) or MICRO_CUSTOM_OPS.get(op)


def resolver_methods(ops: Iterable[str]) -> list[str]:
    """The resolver methods that register ``ops``: one per distinct operation, sorted by operation name.

    Operations TFLM has no kernel for are left out (see :func:`missing_ops`).
    """
    return [method for op in sorted(set(ops)) if (method := _method(op)) is not None]


def missing_ops(ops: Iterable[str]) -> list[str]:
    """The distinct operations among ``ops`` that TFLM has no kernel for (custom ops it does not ship included),
    sorted."""
    return sorted({op for op in ops if _method(op) is None})
