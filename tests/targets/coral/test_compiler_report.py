"""The edgetpu_compiler report parser on real compiler output, and the Edge TPU facts module.

Every report below is pasted verbatim from its public source (URL above it); where the stored copy of a thread
was cut short, the text stops at the last complete line and the comment says so.
"""

# ruff: noqa: E501, W291 -- the compiler reports are pasted verbatim, long lines and trailing spaces included.

from __future__ import annotations

import pytest

from edgecnn.errors import ModelFormatError
from edgecnn.targets.coral.compiler_report import (
    compiler_size,
    compiler_version,
    parse_operation_log,
    parse_report,
)
from edgecnn.targets.coral.ops import (
    MAX_OP_VERSIONS,
    OP_VERSION_REJECTIONS,
    SUPPORTED_OPS,
    EdgeTpuOp,
    version_too_new,
)

# --- stdout -------------------------------------------------------------------------------------------------

# Compiler 15.0, partly mapped, run without -s (no table on stdout).
# https://github.com/google-coral/edgetpu/issues/393
STDOUT_15_PARTIAL = """\
Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 2644 ms.

Input model: model.tflite
Input size: 4.22MiB
Output model: ./EdgeTPU/model_edgetpu.tflite
Output size: 4.71MiB
On-chip memory used for caching model parameters: 3.21MiB
On-chip memory remaining for caching model parameters: 3.78MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 165
Operation log: ./EdgeTPU/model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 117
Number of operations that will run on CPU: 48
See the operation log file for individual operation details.
"""

# Compiler 2.1 with -s, partly mapped ("More than one subgraph is not supported").
# https://github.com/google-coral/edgetpu/issues/60 (the stored copy of the thread ends inside the table: the
# text stops at its last complete row).
STDOUT_21_PARTIAL_TABLE = """\
Edge TPU Compiler version 2.1.302470888

Model compiled successfully in 12264 ms.

Input model: model2.tflite
Input size: 8.11MiB
Output model: model2_edgetpu.tflite
Output size: 9.47MiB
On-chip memory used for caching model parameters: 6.86MiB
On-chip memory remaining for caching model parameters: 7.75KiB
Off-chip memory used for streaming uncached model parameters: 1.22MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 93
Operation log: model2_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 83
Number of operations that will run on CPU: 10

Operator                       Count      Status

LOGISTIC                       1          More than one subgraph is not supported
ADD                            10         Mapped to Edge TPU
CONCATENATION                  1          More than one subgraph is not supported
CONCATENATION                  3          Mapped to Edge TPU
"""

# Compiler 16.0 with -s, fully mapped (no per-device count lines), under the YOLO exporter's own first line.
# https://github.com/WongKinYiu/yolov7/pull/1672 (the stored copy ends inside the table, after the QUANTIZE row).
STDOUT_16_FULL = """\
Edge TPU: starting export with Edge TPU compiler 16.0.384591198...
Edge TPU Compiler version 16.0.384591198
Searching for valid delegate with step 10
Try to compile segment with 246 ops
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 3133 ms.

Input model: runs/train/exp8/weights/best-int8.tflite
Input size: 6.00MiB
Output model: runs/train/exp8/weights/best-int8_edgetpu.tflite
Output size: 6.47MiB
On-chip memory used for caching model parameters: 5.90MiB
On-chip memory remaining for caching model parameters: 1.16MiB
Off-chip memory used for streaming uncached model parameters: 41.75KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 246
Operation log: runs/train/exp8/weights/best-int8_edgetpu.log

Operator                       Count      Status

ADD                            3          Mapped to Edge TPU
RESHAPE                        6          Mapped to Edge TPU
MAX_POOL_2D                    4          Mapped to Edge TPU
CONCATENATION                  18         Mapped to Edge TPU
PAD                            4          Mapped to Edge TPU
LOGISTIC                       64         Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        2          Mapped to Edge TPU
QUANTIZE                       5          Mapped to Edge TPU
"""

# Compiler 16.0 refusing a model from TensorFlow 2.16 for an operator version it does not know.
# https://github.com/google-coral/libedgetpu/issues/71
STDOUT_16_OP_VERSION = """\
Edge TPU Compiler version 16.0.384591198
ERROR: Didn't find op for builtin opcode 'EXP' version '2'. An older version of this builtin might be supported. Are you using an old TFLite binary with a newer model?

ERROR: Registration failed.

Invalid model: model_2.tflite
Model could not be parsed
"""

# Compiler 16.0, TRANSPOSE_CONV with a fused activation (version 4).
# https://github.com/google-coral/edgetpu/issues/845
STDOUT_16_TRANSPOSE_CONV_V4 = """\
Edge TPU Compiler version 16.0.384591198
ERROR: Didn't find op for builtin opcode 'TRANSPOSE_CONV' version '4'. An older version of this builtin might be supported. Are you using an old TFLite binary with a newer model?

ERROR: Registration failed.

Invalid model: model_full_integer_quant.tflite
Model could not be parsed
"""

# Compiler 14.1 on a model with float operations left in it.
# https://github.com/google-coral/edgetpu/issues/168
STDOUT_14_NOT_QUANTIZED = """\
Edge TPU Compiler version 14.1.317412892
Invalid model: my_mnist_quant.tflite
Model not quantized
"""

# Compiler 15.0 crashing (the trailing space after "Aborting!" is in the original).
# https://github.com/google-coral/edgetpu/issues/358
STDOUT_15_INTERNAL_ERROR = """\
Edge TPU Compiler version 15.0.340273435

Internal compiler error. Aborting! 
"""

# Compiler 16.0 with -a giving up on activations too large for the chip (the issue quotes it with "> " markers,
# left out here, and the exporter's lines around it are dropped).
# https://github.com/google-coral/edgetpu/issues/512
STDOUT_16_LARGE_ACTIVATIONS = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.
ERROR: Restored original execution plan after delegate application failure.
Compilation failed: Compilation failed due to large activation tensors in model.
Compilation child process completed within timeout period.
Compilation failed! 
"""

# The 2019 web compiler's log: another tool's format, which the parser must not mistake for edgetpu_compiler's.
# https://github.com/dgist-datalab/Datalab_Intern/blob/6b78cf3fa7a87a239f365386846c1059a4ed9227/Edge_TPU/edge_TPU_compiler.md
WEB_COMPILER_2019 = """\
Compiler Version: 0.14.5
Output Model Size: 4.32MB
Total no. of operations: 31
No. of operations that will run on Edge TPU: 31 (100%)
No. of operations that will run on CPU: 0 (0%)
"""

# --- operation logs -----------------------------------------------------------------------------------------

# Compiler 16.0, every operation mapped except the float DEQUANTIZE at the end.
# https://github.com/jiri-kula/EfficientDet/blob/069975ed0b5fd09d680c4482960faee46702086a/model_edgetpu.log
LOG_16_EFFICIENTDET = """\
Edge TPU Compiler version 16.0.384591198
Input: model.tflite
Output: model_edgetpu.tflite

Operator                       Count      Status

RESIZE_NEAREST_NEIGHBOR        12         Mapped to Edge TPU
QUANTIZE                       11         Mapped to Edge TPU
CONV_2D                        152        Mapped to Edge TPU
DEQUANTIZE                     3          Operation is working on an unsupported data type
TANH                           20         Mapped to Edge TPU
STRIDED_SLICE                  10         Mapped to Edge TPU
CONCATENATION                  13         Mapped to Edge TPU
SUB                            5          Mapped to Edge TPU
RESHAPE                        15         Mapped to Edge TPU
L2_NORMALIZATION               10         Mapped to Edge TPU
LOGISTIC                       31         Mapped to Edge TPU
DEPTHWISE_CONV_2D              130        Mapped to Edge TPU
MUL                            40         Mapped to Edge TPU
SUM                            5          Mapped to Edge TPU
ADD                            42         Mapped to Edge TPU
MAX_POOL_2D                    14         Mapped to Edge TPU
"""

# Compiler 14.1, tiny YOLO: a resize whose operator version the compiler does not map, then everything after it
# on the CPU.
# https://github.com/rajansaini691/retinanet-model-tflite/blob/c9dfb5b35b77bf87560220c2b434d76f08155298/tiny_yolo_edgetpu.log
LOG_14_TINY_YOLO = """\
Edge TPU Compiler version 14.1.317412892
Input: tiny_yolo.tflite
Output: tiny_yolo_edgetpu.tflite

Operator                       Count      Status

CONCATENATION                  1          More than one subgraph is not supported
MAX_POOL_2D                    6          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
CONV_2D                        11         Mapped to Edge TPU
CONV_2D                        2          More than one subgraph is not supported
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
QUANTIZE                       1          More than one subgraph is not supported
QUANTIZE                       2          Mapped to Edge TPU
"""

# Compiler 15.0, a small fully mapped model (the second of two logs pasted in the README).
# https://github.com/system-software-lab/nrf20/blob/a1ced5ce8c3043207bd49b214608acd5134f9154/convert/quantize/README.md
LOG_15_MNIST7 = """\
Edge TPU Compiler version 15.0.340273435
Input: mnist7.tflite
Output: mnist7_edgetpu.tflite

Operator                       Count      Status

SOFTMAX                        1          Mapped to Edge TPU
FULLY_CONNECTED                2          Mapped to Edge TPU
RESHAPE                        1          Mapped to Edge TPU
CONV_2D                        2          Mapped to Edge TPU
MAX_POOL_2D                    2          Mapped to Edge TPU
"""

# Compiler 15.0, the same network with float input/output: the float QUANTIZE and DEQUANTIZE stay on the CPU
# (the first log in the same README).
LOG_15_MNIST4_FLOAT_IO = """\
Edge TPU Compiler version 15.0.340273435
Input: mnist4.tflite
Output: mnist4_edgetpu.tflite

Operator                       Count      Status

RESHAPE                        1          Mapped to Edge TPU
CONV_2D                        2          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
DEQUANTIZE                     1          Operation is working on an unsupported data type
MAX_POOL_2D                    2          Mapped to Edge TPU
FULLY_CONNECTED                2          Mapped to Edge TPU
"""

# Compiler 15.0, fully mapped, for a model named model.tflite.
# https://github.com/MarcelloCeresini/Franco/blob/39e2fdcda88397aa8c9c45a45dfbcf335b496b8a/model_edgetpu.log
LOG_15_FRANCO = """\
Edge TPU Compiler version 15.0.340273435
Input: model.tflite
Output: model_edgetpu.tflite

Operator                       Count      Status

RESHAPE                        1          Mapped to Edge TPU
FULLY_CONNECTED                2          Mapped to Edge TPU
"""


def test_partly_mapped_summary_without_table() -> None:
    report = parse_report(STDOUT_15_PARTIAL)
    assert report.compiler_version == "15.0.340273435"
    assert report.success and not report.fully_mapped
    assert report.compile_time_ms == 2644
    assert report.input_model == "model.tflite"
    assert report.output_model == "./EdgeTPU/model_edgetpu.tflite"
    assert report.input_size_bytes == round(4.22 * 1024**2)
    assert report.output_size_bytes == round(4.71 * 1024**2)
    assert report.on_chip_used_bytes == round(3.21 * 1024**2)
    assert report.on_chip_remaining_bytes == round(3.78 * 1024**2)
    assert report.off_chip_used_bytes == 0
    assert (report.subgraphs, report.total_ops) == (1, 165)
    assert (report.ops_on_tpu, report.ops_on_cpu) == (117, 48)
    assert report.operation_log == "./EdgeTPU/model_edgetpu.log"
    assert report.operators == ()
    assert report.errors == () and report.failure is None and report.failure_message() is None
    report.raise_for_failure()  # a successful compile raises nothing


def test_partly_mapped_table_keeps_each_status() -> None:
    report = parse_report(STDOUT_21_PARTIAL_TABLE)
    assert report.compiler_version == "2.1.302470888"
    assert report.on_chip_remaining_bytes == round(7.75 * 1024)
    assert report.off_chip_used_bytes == round(1.22 * 1024**2)
    # The compiler's own counts win over the (here cut short) table.
    assert (report.ops_on_tpu, report.ops_on_cpu) == (83, 10)
    assert [(r.operator, r.count, r.on_tpu) for r in report.operators] == [
        ("LOGISTIC", 1, False),
        ("ADD", 10, True),
        ("CONCATENATION", 1, False),
        ("CONCATENATION", 3, True),
    ]
    assert report.operators[0].status == "More than one subgraph is not supported"
    assert report.operators[0].reason == "after_unmapped_op"
    assert [r.operator for r in report.operators if not r.on_tpu] == ["LOGISTIC", "CONCATENATION"]


def test_fully_mapped_counts_are_derived() -> None:
    report = parse_report(STDOUT_16_FULL)
    assert report.compiler_version == "16.0.384591198"
    assert report.success and report.fully_mapped
    assert report.off_chip_used_bytes == round(41.75 * 1024)
    # No "will run on" lines: the total is on the TPU because no table row is unmapped.
    assert (report.ops_on_tpu, report.ops_on_cpu) == (246, 0)
    assert len(report.operators) == 8 and all(r.on_tpu for r in report.operators)
    assert report.operators[-1].to_dict() == {
        "operator": "QUANTIZE",
        "count": 5,
        "status": "Mapped to Edge TPU",
        "on_tpu": True,
        "reason": "mapped",
    }


@pytest.mark.parametrize(
    ("stdout", "failure", "rejected"),
    [
        (STDOUT_16_OP_VERSION, "op_version", (("EXP", 2),)),
        (STDOUT_16_TRANSPOSE_CONV_V4, "op_version", (("TRANSPOSE_CONV", 4),)),
        (STDOUT_14_NOT_QUANTIZED, "not_quantized", ()),
        (STDOUT_15_INTERNAL_ERROR, "internal_error", ()),
        (STDOUT_16_LARGE_ACTIVATIONS, "activations_too_large", ()),
    ],
)
def test_failures_are_results(stdout: str, failure: str, rejected: tuple[tuple[str, int], ...]) -> None:
    report = parse_report(stdout)
    assert not report.success and not report.fully_mapped
    assert report.failure == failure
    assert report.rejected_op_versions == rejected
    assert report.errors and report.compile_time_ms is None and report.total_ops is None
    message = report.failure_message()
    assert message is not None and "\n" not in message and report.compiler_version in message
    with pytest.raises(ModelFormatError) as raised:
        report.raise_for_failure()
    assert str(raised.value) == message


def test_error_lines_are_kept_verbatim() -> None:
    report = parse_report(STDOUT_14_NOT_QUANTIZED)
    assert report.errors == ("Invalid model: my_mnist_quant.tflite", "Model not quantized")
    assert report.failure_message() == (
        "edgetpu_compiler 14.1.317412892 failed: Invalid model: my_mnist_quant.tflite; Model not quantized"
    )
    report = parse_report(STDOUT_16_OP_VERSION)
    assert report.errors[0].startswith("ERROR: Didn't find op for builtin opcode 'EXP' version '2'.")
    assert report.errors[1:] == (
        "ERROR: Registration failed.",
        "Invalid model: model_2.tflite",
        "Model could not be parsed",
    )


def test_to_dict_is_json_ready() -> None:
    import json

    data = parse_report(STDOUT_21_PARTIAL_TABLE).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ops_on_tpu"] == 83 and data["operators"][1]["on_tpu"] is True
    failed = parse_report(STDOUT_16_OP_VERSION).to_dict()
    assert failed["success"] is False and failed["failure"] == "op_version"
    assert failed["rejected_op_versions"] == [{"operator": "EXP", "version": 2}]


def test_operation_logs() -> None:
    log = parse_operation_log(LOG_16_EFFICIENTDET)
    assert (log.compiler_version, log.input_model, log.output_model) == (
        "16.0.384591198",
        "model.tflite",
        "model_edgetpu.tflite",
    )
    assert len(log.operators) == 16
    assert [(r.operator, r.reason) for r in log.operators if not r.on_tpu] == [("DEQUANTIZE", "unsupported_data_type")]

    yolo = parse_operation_log(LOG_14_TINY_YOLO)
    assert {r.reason for r in yolo.operators} == {
        "after_unmapped_op",
        "mapped",
        "unsupported_version",
        "unspecified_limitation",
    }
    assert sum(r.count for r in yolo.operators if r.on_tpu) == 19

    float_io = parse_operation_log(LOG_15_MNIST4_FLOAT_IO)
    assert [r.operator for r in float_io.operators if not r.on_tpu] == ["QUANTIZE", "DEQUANTIZE"]
    assert all(r.on_tpu for r in parse_operation_log(LOG_15_MNIST7).operators)


def test_log_supplies_the_table() -> None:
    # Two unrelated public runs that both compiled a "model.tflite": enough to show the merge, not a real pair.
    report = parse_report(STDOUT_15_PARTIAL, log=LOG_15_FRANCO)
    assert [r.operator for r in report.operators] == ["RESHAPE", "FULLY_CONNECTED"]
    assert (report.ops_on_tpu, report.ops_on_cpu) == (117, 48)  # stdout's counts stay


def test_log_of_another_model_is_refused() -> None:
    with pytest.raises(ModelFormatError, match=r"tiny_yolo\.tflite"):
        parse_report(STDOUT_15_PARTIAL, log=LOG_14_TINY_YOLO)


def test_not_compiler_output() -> None:
    with pytest.raises(ModelFormatError, match="not edgetpu_compiler output"):
        parse_report(WEB_COMPILER_2019)
    with pytest.raises(ModelFormatError, match="empty"):
        parse_report("\n\n")
    with pytest.raises(ModelFormatError, match="operation log"):
        parse_operation_log(STDOUT_15_PARTIAL)


def test_two_models_in_one_run_are_refused() -> None:
    body = STDOUT_15_PARTIAL.split("Input model:", 1)[1]
    with pytest.raises(ModelFormatError, match="2 models"):
        parse_report(STDOUT_15_PARTIAL + "\nInput model:" + body)


def test_compiler_version() -> None:
    assert compiler_version(STDOUT_16_LARGE_ACTIVATIONS) == "16.0.384591198"
    assert compiler_version(LOG_14_TINY_YOLO) == "14.1.317412892"
    # The exporter's "...compiler 16.0.384591198..." line is not the banner.
    assert compiler_version("Edge TPU: starting export with Edge TPU compiler 16.0.384591198...") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.00B", 0), ("512.00B", 512), ("7.75KiB", 7936), ("3.41MiB", round(3.41 * 2**20)), ("1.50GiB", 3 * 2**29)],
)
def test_compiler_size(text: str, expected: int) -> None:
    assert compiler_size(text) == expected


def test_compiler_size_rejects_what_is_not_a_size() -> None:
    with pytest.raises(ModelFormatError, match="size"):
        compiler_size("4.32 parsecs")


# --- edgetpu_ops --------------------------------------------------------------------------------------------


def test_supported_ops_table() -> None:
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "SOFTMAX"):
        assert name in SUPPORTED_OPS
    for name in ("RESHAPE", "QUANTIZE", "ADD", "MUL", "MEAN", "CONCATENATION", "PAD", "RELU", "RELU6", "TANH"):
        assert name in SUPPORTED_OPS
    assert "DEQUANTIZE" not in SUPPORTED_OPS and "LEAKY_RELU" not in SUPPORTED_OPS
    with pytest.raises(ValueError, match="unknown constraint keys"):  # a typo in the table fails at import
        EdgeTpuOp("CONV_2D", "Conv2d", None, "", ("same_dilatoin",))
    assert "no_fused_activation" in SUPPORTED_OPS["MAX_POOL_2D"].constraints
    assert SUPPORTED_OPS["SOFTMAX"].constraints == ("softmax_1d_max_16000",)
    # Every op a real 16.0 log reports as mapped is in the table.
    mapped = {r.operator for r in parse_operation_log(LOG_16_EFFICIENTDET).operators if r.on_tpu}
    assert mapped <= SUPPORTED_OPS.keys()


def test_op_version_limits() -> None:
    assert version_too_new("CONV_2D", 6) and not version_too_new("CONV_2D", 3)
    assert version_too_new("EXP", 2) and not version_too_new("SOFTMAX", 99)  # no report: no limit
    # Each limit is one below a recorded 16.0 rejection.
    rejected = {(r.operator, r.version) for r in OP_VERSION_REJECTIONS if r.compiler == "16.0"}
    assert {(op, limit + 1) for op, limit in MAX_OP_VERSIONS.items()} == rejected
    # The rejections in the reports above are the recorded ones.
    for stdout in (STDOUT_16_OP_VERSION, STDOUT_16_TRANSPOSE_CONV_V4):
        ((op, version),) = parse_report(stdout).rejected_op_versions
        assert version_too_new(op, version)
