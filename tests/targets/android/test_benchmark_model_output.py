"""The benchmark_model parsers on real output of TFLite's tool, copied verbatim from public GitHub issues.

Each sample names its source. They span TensorFlow 1.x to 2.15, plain lines, ``INFO:``-prefixed lines (2.13+)
and the Android benchmark app's logcat lines, the old and new timing lines and memory lines, and two failures.
No test here needs adb or a model.
"""

from __future__ import annotations

import pytest

from edgecnn.errors import TargetUnavailableError
from edgecnn.targets.android.benchmark_model import (
    INPUT_NAME,
    benchmark_args,
    benchmark_error,
    delegate_flag,
    message,
    no_output_dump_message,
    parse_help,
    parse_log,
    parse_stats,
)

# https://github.com/tensorflow/tensorflow/issues/43541 (android_arm_benchmark_model, GPU delegate, TF 2.3/2.4 era)
GPU_ANDROID = """\
STARTING!
Log parameter values verbosely: [0]
Min num runs: [50]
Num threads: [4]
Min warmup runs: [1]
Graph: [/data/local/tmp/tflite/denoising_32bit.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Use gpu: [1]
Loaded model /data/local/tmp/tflite/denoising_32bit.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
INFO: Initialized OpenCL-based API.
INFO: Created 1 GPU delegate kernels.
Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.
The input model file size (MB): 7.07479
Initialized session in 870.557ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=4 first=130565 curr=120829 min=117370 max=130565 avg=122373 std=4930

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=119212 curr=118055 min=113737 max=124776 avg=119375 std=1948

Inference timings in us: Init: 870557, First inference: 130565, Warmup (avg): 122373, Inference (avg): 119375
"""

# https://github.com/tensorflow/tensorflow/issues/42507 (Android, TF 2.3: the older "Peak memory footprint" line)
PEAK_MEMORY = """\
STARTING!
Duplicate flags: num_threads
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model /data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite
The input model file size (MB): 0.004448
Initialized session in 0.855ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=15 first=49060 curr=33682 min=32825 max=49060 avg=34825.1 std=3930

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450

Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=0 overall=12.8672
"""  # noqa: E501

# https://github.com/tensorflow/tensorflow/issues/61946 (TF 2.13/2.14 CMake build: every line prefixed "INFO: ")
INFO_PREFIXED = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [./mobilenet_v1_1.0_224_quant.tflite]
INFO: Loaded model ./mobilenet_v1_1.0_224_quant.tflite
INFO: The input model file size (MB): 4.27635
INFO: Initialized session in 0.53ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=5 first=124020 curr=116061 min=115177 max=124020 avg=117225 std=3412

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=121183 curr=115199 min=111222 max=121324 avg=116066 std=1906

INFO: Inference timings in us: Init: 530, First inference: 124020, Warmup (avg): 117225, Inference (avg): 116066
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.75 overall=12.1914
"""  # noqa: E501

# https://github.com/tensorflow/tensorflow/issues/40183 (TF 2.2: "Average inference timings", one warm-up run
# printed as "count=1 curr=...", and averages in scientific notation)
OLD_AVERAGE = """\
STARTING!
Min num runs: [50]
Min runs duration (seconds): [1]
Max runs duration (seconds): [150]
Inter-run delay (seconds): [-1]
Num threads: [8]
Benchmark name: []
Output prefix: []
Min warmup runs: [1]
Min warmup runs duration (seconds): [0.5]
Graph: [model.tflite]
Input layers: []
Input shapes: []
Input value ranges: []
Input layer values files: []
Allow fp16 : [0]
Require full delegation : [0]
Enable op profiling: [0]
Max profiling buffer entries: [1024]
CSV File to export profiling data to: []
Max number of delegated partitions : [0]
Use gpu : [0]
Use xnnpack : [0]
Loaded model model.tflite
The input model file size (MB): 47.4346
Initialized session in 48.019ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=15908626

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=9 first=16856867 curr=16865810 min=16767506 max=17015249 avg=1.68505e+07 std=69772

Average inference timings in us: Warmup: 1.59086e+07, Init: 48019, Inference: 1.68505e+07
"""

# https://github.com/yuenshome/yuenshome.github.io/issues/77 (TF 1.x on Android: "..., no stats: <avg>")
TF1_ANDROID = """\
Loaded model /data/local/tmp/tflite/tfmodel/mobilenet_v1_1.0_224_quant.tflite
resolved reporter
Initialized session in 9.933ms
Running benchmark for at least 4 iterations and at least 0.5 seconds
count=7 first=127425 curr=66709 min=66709 max=127425 avg=76605.9 std=20944

Running benchmark for at least 10 iterations and at least 1 seconds
count=15 first=66753 curr=66800 min=66699 max=66838 avg=66767.6 std=39

Average inference timings in us: Warmup: 76605.9, Init: 9933, no stats: 66767.6
"""

# https://github.com/tensorflow/tensorflow/issues/56301 (the Android benchmark app's logcat, TF 2.9, NNAPI)
LOGCAT = """\
05-30 15:16:44.857  3380  3380 I tflite  : Explicitly applied NNAPI delegate, and the model graph will be partially executed by the delegate w/ 44 delegate kernels.
05-30 15:16:44.858  3380  3380 I tflite  : The input model file size (MB): 0.113392
05-30 15:16:44.858  3380  3380 I tflite  : Initialized session in 126.059ms.
05-30 15:16:44.858  3380  3380 I tflite  : Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
05-30 15:16:45.362  3380  3380 I tflite  : count=40 first=32942 curr=12594 min=11340 max=32942 avg=12581.9 std=3331
05-30 15:16:45.362  3380  3380 I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
05-30 15:16:46.365  3380  3380 I tflite  : count=75 first=12840 curr=11853 min=11787 max=13649 avg=12167.6 std=325
05-30 15:16:46.366  3380  3380 I tflite  : Inference timings in us: Init: 126059, First inference: 32942, Warmup (avg): 12581.9, Inference (avg): 12167.6
"""  # noqa: E501

# https://github.com/tensorflow/tensorflow/issues/59232 (logcat, TF 2.10: a warm-up of one run)
ONE_WARMUP_RUN = "01-11 23:29:03.662  7651  7651 I tflite  : count=1 curr=1381510"

# https://github.com/tensorflow/tensorflow/issues/56166 (TF 2.8 on Android: the delegate cannot be applied)
XNNPACK_FAILS = """\
STARTING!
Log parameter values verbosely: [0]
Graph: [pruning_model.tflite]
Use xnnpack: [1]
Loaded model pruning_model.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
XNNPACK delegate created.
Failed to apply XNNPACK delegate.
Benchmarking failed.
"""

# https://github.com/tensorflow/tensorflow/issues/62753 (TF 2.15-era build, GPU delegate fails to compile its kernels)
GPU_FAILS = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [mobilenet_v1_1.0_224_float.tflite]
INFO: Use gpu: [1]
INFO: Loaded model mobilenet_v1_1.0_224_float.tflite
INFO: Created TensorFlow Lite delegate for GPU.
INFO: GPU delegate created.
ERROR: Failed to build program executable - Build program failure(97:0) : error : conversion between different vector types not allowed
(98:0) : error : conversion between different vector types not allowed
(99:0) : error : conversion between different vector types not allowed
"""  # noqa: E501


def test_gpu_run_on_android() -> None:
    log = parse_log(GPU_ANDROID)
    assert log.complete
    assert log.warmup is not None and log.warmup.count == 4 and log.warmup.first == 130565
    assert log.inference is not None
    stats = log.inference
    assert (stats.count, stats.first, stats.curr, stats.min, stats.max) == (50, 119212, 118055, 113737, 124776)
    assert (stats.avg, stats.std) == (119375, 1948)
    assert (stats.p5, stats.median, stats.p95) == (None, None, None)  # this version prints no percentiles
    assert (log.init_us, log.first_inference_us, log.warmup_avg_us, log.inference_avg_us) == (
        870557,
        130565,
        122373,
        119375,
    )
    assert log.memory_init_mb is None and log.memory_overall_mb is None


def test_memory_lines_old_and_new() -> None:
    old = parse_log(PEAK_MEMORY)
    assert (old.memory_init_mb, old.memory_overall_mb) == (0.0, 12.8672)
    assert old.inference is not None and old.inference.avg == pytest.approx(33209.4)
    new = parse_log(INFO_PREFIXED)
    assert (new.memory_init_mb, new.memory_overall_mb) == (3.75, 12.1914)


def test_info_prefixed_lines() -> None:
    log = parse_log(INFO_PREFIXED)
    assert log.complete
    assert log.warmup is not None and log.warmup.count == 5
    assert log.inference is not None and (log.inference.count, log.inference.min, log.inference.max) == (
        50,
        111222,
        121324,
    )
    assert (log.init_us, log.inference_avg_us) == (530, 116066)


def test_old_average_line_all_same_warmup_and_scientific_notation() -> None:
    log = parse_log(OLD_AVERAGE)
    assert log.complete
    warmup = log.warmup
    assert warmup is not None and warmup.count == 1
    assert warmup.first == warmup.min == warmup.max == warmup.avg == warmup.curr == 15908626 and warmup.std == 0
    assert log.inference is not None and log.inference.count == 9  # --max_secs cut the 50 runs short
    assert log.inference.avg == pytest.approx(1.68505e7)
    assert (log.init_us, log.warmup_avg_us, log.inference_avg_us) == (48019, 1.59086e7, 1.68505e7)
    assert log.first_inference_us is None  # this version does not print it


def test_tf1_line_names_the_average_no_stats() -> None:
    log = parse_log(TF1_ANDROID)
    assert log.complete
    assert (log.init_us, log.warmup_avg_us, log.inference_avg_us) == (9933, 76605.9, 66767.6)
    assert log.inference is not None and (log.inference.count, log.inference.std) == (15, 39)


def test_logcat_lines_of_the_android_app() -> None:
    log = parse_log(LOGCAT)
    assert log.complete
    assert log.warmup is not None and log.warmup.count == 40
    assert log.inference is not None and (log.inference.count, log.inference.avg) == (75, 12167.6)
    assert (log.init_us, log.first_inference_us) == (126059, 32942)
    assert message(LOGCAT.splitlines()[1]) == "The input model file size (MB): 0.113392"


def test_one_run_stats_line() -> None:
    stats = parse_stats(ONE_WARMUP_RUN)
    assert stats is not None and (stats.count, stats.min, stats.max, stats.avg, stats.std) == (
        1,
        1381510,
        1381510,
        1381510,
        0,
    )
    assert parse_stats("INFO: count=0") is None  # no warm-up runs


def test_percentiles_where_the_version_prints_them() -> None:
    # The form of TFLite/LiteRT builds whose BenchmarkModel::Run keeps a StatWithPercentiles (LiteRT's
    # tflite/tools/benchmark/benchmark_model.cc, xla/tsl/util/stats_calculator.h); the fake tool prints it too.
    stats = parse_stats(
        "INFO: count=50 first=2100 curr=1904 min=1850 max=2433 avg=1933.4 std=88 p5=1861 median=1913 p95=2100"
    )
    assert stats is not None and (stats.p5, stats.median, stats.p95) == (1861, 1913, 2100)
    same = parse_stats("INFO: count=3 curr=500(all same) p5=500 median=500 p95=500")
    assert same is not None and same.count == 3 and same.median == 500 and same.std == 0


def test_a_profiling_table_is_not_a_phase() -> None:
    text = INFO_PREFIXED + "INFO: Timings (microseconds): count=50 first=1 curr=1 min=1 max=9 avg=2 std=1\n"
    log = parse_log(text)
    assert log.inference is not None and log.inference.count == 50 and log.inference.max == 121324


def test_errors_name_their_cause() -> None:
    assert benchmark_error(XNNPACK_FAILS) == "Failed to apply XNNPACK delegate."
    assert not parse_log(XNNPACK_FAILS).complete
    assert benchmark_error(GPU_FAILS) == (
        "Failed to build program executable - Build program failure(97:0) : error : conversion between different "
        "vector types not allowed"
    )
    assert benchmark_error("INFO: STARTING!\nERROR: Benchmarking failed.\n") == "Benchmarking failed."
    assert benchmark_error(GPU_ANDROID) is None


def test_help_lists_flags() -> None:
    # Flags::Usage (tensorflow/lite/tools/command_line_flags.cc): "--name=default<TAB>type<TAB>optional<TAB>text".
    text = (
        "ERROR: usage: ./benchmark_model <flags>\nFlags:\n"
        "\t--num_runs=50         \tint32\toptional\texpected number of runs, see also min_secs, max_secs\n"
        "\t--graph=              \tstring\toptional\tgraph file name\n"
        "\t--output_filepath=    \tstring\toptional\tFile path to export outputs layer as binary data.\n"
        "\t--use_xnnpack=false   \tbool\toptional\texplicitly apply the XNNPACK delegate.\n"
        "ERROR: Benchmarking failed.\n"
    )
    assert parse_help(text) == {"num_runs", "graph", "output_filepath", "use_xnnpack"}
    assert parse_help("/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file") == frozenset()


FLAGS = frozenset(
    {"graph", "num_threads", "num_runs", "warmup_runs", "min_secs", "warmup_min_secs", "use_xnnpack", "use_gpu"}
    | {"use_nnapi", "input_layer", "input_layer_shape", "input_layer_value_files", "output_filepath"}
)


def test_command_line_for_one_image() -> None:
    args = benchmark_args(
        graph="model.tflite",
        flags=FLAGS,
        delegate="gpu",
        threads=2,
        runs=1,
        warmup=0,
        input_shape=[1, 32, 32, 3],
        input_file="in_1/0000.bin",
        output_file="out_1/0000.bin",
    )
    assert args == [
        "--graph=model.tflite",
        "--num_threads=2",
        "--num_runs=1",
        "--warmup_runs=0",
        "--min_secs=0",
        "--warmup_min_secs=0",
        "--use_gpu=true",
        f"--input_layer={INPUT_NAME}",
        "--input_layer_shape=1,32,32,3",
        f"--input_layer_value_files={INPUT_NAME}:in_1/0000.bin",
        "--output_filepath=out_1/0000.bin",
    ]


def test_delegates_and_missing_flags() -> None:
    assert delegate_flag("cpu", FLAGS) == ["--use_xnnpack=false"]
    assert delegate_flag("xnnpack", FLAGS) == ["--use_xnnpack=true"]
    assert delegate_flag("nnapi", FLAGS) == ["--use_nnapi=true"]
    assert delegate_flag("cpu", frozenset({"graph"})) == []  # before XNNPACK existed, the CPU path was the default
    with pytest.raises(TargetUnavailableError, match=r"no --use_gpu .* built without the GPU delegate"):
        delegate_flag("gpu", FLAGS - {"use_gpu"})
    with pytest.raises(TargetUnavailableError, match="no --output_filepath"):
        benchmark_args(
            graph="m", flags=FLAGS - {"output_filepath"}, delegate="cpu", threads=None, runs=1, warmup=0,
            output_file="o.bin",
        )  # fmt: skip
    old = benchmark_args(graph="m", flags=frozenset({"graph"}), delegate="cpu", threads=None, runs=3, warmup=1)
    assert old == ["--graph=m", "--num_runs=3", "--warmup_runs=1"]  # no --min_secs where the binary lacks it
    assert "latency only" in no_output_dump_message() and "2.10" in no_output_dump_message()
