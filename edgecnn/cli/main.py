"""The ``edgecnn`` command: each command parses options, calls one library function and renders the result.

Exit codes: 0 success, 1 a validation gate failed, 2 bad input (one line on stderr says what and how to fix).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from edgecnn import __version__
from edgecnn.cli import render
from edgecnn.cli.finetune_cmd import finetune
from edgecnn.cli.progress import epoch_printer, stage_progress, warn_skipped
from edgecnn.convert import IO_TYPES, QUANTIZE_MODES
from edgecnn.errors import EdgecnnError, EdgecnnWarning
from edgecnn.fileio import write_bytes_atomic
from edgecnn.targets.benchmark_model import DELEGATE_FLAGS
from edgecnn.train.augment import AUGMENTATIONS

EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """Turns every :class:`EdgecnnError`, and file-system errors, into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", EdgecnnWarning)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except EdgecnnError as exc:
            click.echo(f"edgecnn: error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except OSError as exc:
            # A folder without write permission, a full disk: the environment, not a bug to trace back.
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"edgecnn: error: {exc.strerror or exc}{where} (check the path and its permissions)", err=True)
            ctx.exit(EXIT_BAD_INPUT)


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Our warnings as one line each; anything else as Python shows it."""
    if issubclass(category, EdgecnnWarning):
        click.echo(f"edgecnn: warning: {message}", err=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def _quiet_option(f: Any) -> Any:
    return click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")(f)


def _json_flag(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(f)


class _Size(click.ParamType):
    """A size in bytes: 262144, 256K, 256KB, 256KiB, 1M."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from edgecnn.errors import UsageError
        from edgecnn.targets.micro_profiles import parse_size

        try:
            return parse_size(str(value))
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


_SIZE = _Size()


def _target_options(f: Any) -> Any:
    """--target and the options that say how to reach it, shared by run, validate, bench and check."""
    options = [
        click.option("--target", "-t", default="host", show_default=True, help="Where it runs (see edgecnn targets)."),
        click.option("--threads", type=int, help="Interpreter threads [host: runtime default; rpi: 4]."),
        click.option("--host", help="Reach the device over SSH: user@address or user@address:port (rpi)."),
        click.option(
            "--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="Extra OpenSSH -o option (repeat)."
        ),
        click.option("--remote-edgecnn", metavar="CMD", help="How to start edgecnn on the device [edgecnn]."),
        click.option(
            "--device",
            metavar="NAME",
            help="coral: which Edge TPU, usb[:N] or pci[:N] [the first found]; micro: the board's profile.",
        ),
        click.option("--ram", type=_SIZE, help="micro: RAM for the arena, bytes or 256K/1M (or --device)."),
        click.option("--flash", type=_SIZE, help="micro: flash for the model, bytes or 256K/1M (or --device)."),
        click.option("--serial", "-s", metavar="S", help="Which phone, as adb devices lists it (android)."),
        click.option("--adb", metavar="PATH", help="The adb client (android) [adb on PATH]."),
        click.option(
            "--benchmark-binary", metavar="PATH", help="TFLite's benchmark_model for Android arm64 (android)."
        ),
        click.option(
            "--delegate", type=click.Choice(list(DELEGATE_FLAGS)), help="benchmark_model's kernels (android) [xnnpack]."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_TARGET_SPECIFIC = ("device", "ram", "flash", "serial", "adb", "benchmark_binary", "delegate")


def _make_target(options: dict[str, Any], **more: Any) -> Any:
    """Pop the target options from a command's keyword arguments and build the target (``more``: options of
    one command only, such as check's --min-tpu-share)."""
    from edgecnn.targets import make_target

    return make_target(
        options.pop("target"),
        threads=options.pop("threads"),
        host=options.pop("host"),
        ssh_options=options.pop("ssh_options"),
        remote_edgecnn=options.pop("remote_edgecnn"),
        **{key: options.pop(key) for key in _TARGET_SPECIFIC},
        **more,
    )


def _target_or_here(options: dict[str, Any]) -> tuple[Any, int | None]:
    """(target, threads) for commands that also run .keras models here: no target for the plain host."""
    threads = options["threads"]
    if options["target"] == "host" and not options["host"]:
        _make_target(options)  # still rejects --ssh-option without --host
        return None, threads
    return _make_target(options), threads


def _emit(result: Any, as_json: bool, text: Any) -> None:
    click.echo(render.as_json(result) if as_json else text(result), nl=not as_json)
    warn_skipped(getattr(result, "skipped", []))  # the demo reads only files it wrote itself


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecnn")
def cli() -> None:
    """Train an image classifier, quantize it to int8 TFLite, and prove the quantized model matches the float one.

    Typical flow: edgecnn train → edgecnn convert → edgecnn validate → edgecnn run. Exit codes: 0 success,
    1 a validation gate failed, 2 bad input.
    """


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="The .keras model to write.")
@click.option("--image-size", default=32, show_default=True, help="Resize images to N x N.")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 (grayscale) or 3 (RGB); guessed from the images.")
@click.option("--epochs", default=20, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the split, initial weights and shuffling.")
@click.option("--validation-split", default=0.1, show_default=True, help="Share of each class held out.")
@click.option("--learning-rate", default=1e-3, show_default=True)
@click.option("--filters", default=32, show_default=True, help="Filters in the first block (doubling per block).")
@click.option(
    "--augment",
    type=click.Choice(AUGMENTATIONS),
    default="none",
    show_default=True,
    help="Random shifts and/or left-right flips while training (flips suit photos, not digits or text).",
)
@click.option("--limit-per-class", type=int, help="Use only the first N images (by name) of each class.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@_quiet_option
@_json_flag
def train(data: str, out: str, channels: str | None, quiet: bool, as_json: bool, **options: Any) -> None:
    """Train the default CNN on an image folder DATA/<class>/<image>.

    \b
    Example:
      edgecnn train photos/ --out model.keras --image-size 32 --epochs 20
    """
    from edgecnn.train import train as train_model

    options["validation_fraction"] = options.pop("validation_split")
    result = train_model(
        data,
        out,
        channels=int(channels) if channels else None,
        on_progress=stage_progress(quiet),
        on_epoch=epoch_printer(quiet),
        **options,
    )
    _emit(result, as_json, render.training)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="The .tflite to write (model.json goes beside it).")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default="int8", show_default=True)
@click.option("--calibration", type=click.Path(), help="Image folder to calibrate int8 ranges on (required for int8).")
@click.option("--calibration-size", default=200, show_default=True, help="Calibration images, class-balanced.")
@click.option("--io", type=click.Choice(IO_TYPES), help="Input/output type of int8 models [int8].")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing calibration images.")
@click.option(
    "--max-drop",
    type=float,
    help="Gate on DATA: if int8 drops more (pp), recover automatically (more calibration, float layers, 16x8).",
)
@click.option("--data", type=click.Path(), help="Labelled held-out images the --max-drop gate is measured on.")
@click.option("--limit-per-class", type=int, help="Use only the first N images of each class of --data.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable calibration image instead of skipping it.")
@click.option(
    "--target",
    "-t",
    help="Convert for this target and build what it needs (coral: full int8, pre-flight, edgetpu_compiler).",
)
@_quiet_option
@_json_flag
def convert(model: str, out: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Convert a trained .keras MODEL to TFLite with a static batch-1 input.

    With --max-drop and --data, an int8 model that drops more than allowed is recovered automatically: more
    calibration images, then the worst layers kept in float (fewest first), then 16-bit activations. Exit 1
    when nothing passes; the best attempt is then written as OUT's stem + .best-attempt.tflite.

    With --target the conversion is what the target runs, and the target builds from it: for coral, the
    Edge TPU pre-flight, then edgetpu_compiler (when installed) writes OUT's stem + _edgetpu.tflite. Exit 1
    when the target cannot run the model.

    \b
    Examples:
      edgecnn convert model.keras --out model_int8.tflite --quantize int8 --calibration photos/
      edgecnn convert model.keras --out model_int8.tflite --calibration photos/train --max-drop 1 --data photos/val
      edgecnn convert model.keras --out model_int8.tflite --calibration photos/ --target coral --io uint8
    """
    from edgecnn.convert.for_target import convert_for_target

    result = convert_for_target(model, out, on_progress=stage_progress(quiet), **options)
    _emit(result, as_json, render.target_conversion)
    conversion = result.conversion
    if not getattr(conversion, "passed", True):
        chosen = conversion.chosen
        click.echo(
            f"edgecnn: gate failed: max-drop: no attempt kept the drop within {conversion.max_drop:.2f} pp; the best "
            f"({chosen.name}, drop {chosen.drop_pp:.2f} pp) is {conversion.conversion.path}",
            err=True,
        )
        sys.exit(EXIT_GATE_FAILED)
    if result.build is not None:
        for finding in result.build.findings:
            if finding.severity in ("error", "warning") and finding.code != "op":
                click.echo(f"edgecnn: {finding.severity}: {finding.message}", err=True)
        if not result.build.passed:
            sys.exit(EXIT_GATE_FAILED)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--calibration", required=True, type=click.Path(), help="The calibration images (as for convert).")
@click.option("--data", type=click.Path(), help="Labelled images the model will see, to compare calibration with.")
@click.option("--candidate", type=click.Path(), help="An int8 .tflite converted from MODEL, to check it matches.")
@click.option("--calibration-size", default=200, show_default=True, help="Calibration images, class-balanced.")
@click.option("--data-limit", default=50, show_default=True, help="Images per class of --data to compare with.")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing calibration images.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@_quiet_option
@_json_flag
def diagnose(model: str, calibration: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Find where int8 quantization of the .keras MODEL loses accuracy, and check the calibration set.

    Per layer: quantization error (TFLite's QuantizationDebugger), range, scale and zero point, worst first,
    and layers whose range one channel sets. Calibration: size, class balance, images far from --data,
    preprocessing of --candidate. Exit 1 when a finding is an error.

    \b
    Example:
      edgecnn diagnose model.keras --calibration photos/train --data photos/val --candidate model_int8.tflite
    """
    from edgecnn.convert.diagnose import diagnose as run_diagnosis

    result = run_diagnosis(model, calibration, on_progress=stage_progress(quiet), **options)
    _emit(result, as_json, render.diagnosis)
    if any(c.severity == "error" for c in result.causes):
        sys.exit(EXIT_GATE_FAILED)


@cli.command()
@click.argument("data", type=click.Path())
@click.option("--reference", "-r", required=True, type=click.Path(), help="Float model: .keras or .tflite.")
@click.option("--candidate", "-c", required=True, type=click.Path(), help="The .tflite model that will ship.")
@click.option("--max-drop", default=1.0, show_default=True, help="Largest allowed accuracy drop, percentage points.")
@click.option("--min-agreement", type=float, help="Smallest allowed top-1 agreement, a fraction (e.g. 0.99).")
@click.option("--limit-per-class", type=int, help="Use only the first N images (by name) of each class.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@click.option("--json", "json_file", type=click.Path(), help="Write the report as JSON to FILE ('-': stdout).")
@click.option(
    "--stages",
    is_flag=True,
    help="Also compare every step here: Keras float → TFLite float → int8 → int8 reference kernels.",
)
@click.option("--report", "report_dir", type=click.Path(), help="Write report.html and its charts into DIR.")
@click.option("--junit", type=click.Path(), help="Write the gates as JUnit XML test cases to FILE.")
@click.option(
    "--calibration", type=click.Path(), help="Calibration images: adds the per-layer error chart to --report."
)
@_target_options
@_quiet_option
def validate(
    data: str,
    reference: str,
    candidate: str,
    json_file: str | None,
    quiet: bool,
    report_dir: str | None,
    junit: str | None,
    calibration: str | None,
    **options: Any,
) -> None:
    """Compare REFERENCE and CANDIDATE on the labelled image folder DATA and gate on the result.

    Exit 0 when every gate passes, 1 when one fails, 2 for bad input. With --target the candidate runs there
    (on a Raspberry Pi over SSH with --target rpi --host pi@raspberrypi); the reference runs here. --report
    writes a self-contained report.html (implies --stages; --calibration adds the per-layer errors), --junit
    the gates as JUnit XML, both also when a gate fails.

    \b
    Examples:
      edgecnn validate --reference model.keras --candidate model_int8.tflite test/ --max-drop 1.0
      edgecnn validate -r model.keras -c model_int8.tflite test/ --report out/ --junit gates.xml --calibration train/
    """
    from edgecnn.evidence import check_outputs, report_payload, write_evidence
    from edgecnn.validate import validate_models

    target, threads = _target_or_here(options)
    check_outputs(report_dir=report_dir, junit=junit)
    if calibration and not report_dir:
        from edgecnn.errors import UsageError

        raise UsageError("--calibration adds the per-layer errors to --report: use it with --report DIR")
    if report_dir:
        options["stages"] = True  # the report shows where the error enters
    progress = stage_progress(quiet)
    report = validate_models(reference, candidate, data, num_threads=threads, target=target, on_progress=progress,
                             **options)  # fmt: skip
    payload: Any = report
    if report_dir or junit:
        # The JSON then carries everything the report shows (sizes, latencies, per-layer errors).
        payload = report_payload(
            report, reference_path=reference, candidate_path=candidate, calibration=calibration, on_progress=progress
        )
        for path in write_evidence(payload, report_dir=report_dir, junit=junit):
            click.echo(f"wrote {path}", err=True)
    if json_file == "-":
        click.echo(render.as_json(payload), nl=False)
    else:
        if json_file:
            write_bytes_atomic(_checked_output(json_file), render.as_json(payload).encode())
        click.echo(render.validation(report))
    warn_skipped(report.skipped)
    if not report.passed:
        for gate in report.gates:
            if not gate.passed:
                click.echo(f"edgecnn: gate failed: {gate.describe()}", err=True)
        sys.exit(EXIT_GATE_FAILED)


def _checked_output(path: str) -> str:
    from edgecnn.fileio import check_output_path

    return str(check_output_path(path))


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", "k", default=3, show_default=True, help="Classes shown per image.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@_target_options
@_quiet_option
@_json_flag
def run(model: str, inputs: tuple[str, ...], quiet: bool, as_json: bool, **options: Any) -> None:
    """Classify images (files or folders) with MODEL, using its sidecar's labels and preprocessing.

    \b
    Examples:
      edgecnn run model_int8.tflite photo.jpg more_photos/ --top-k 3
      edgecnn run --target rpi --host pi@raspberrypi model_int8.tflite photos/
    """
    from edgecnn.classify import classify

    target, threads = _target_or_here(options)
    result = classify(model, list(inputs), num_threads=threads, target=target, **options)
    _emit(result, as_json, render.predictions)


@cli.command()
@click.option(
    "--out", "-o", default="edgecnn-demo", show_default=True, type=click.Path(), help="Folder for everything."
)
@click.option("--epochs", default=30, show_default=True)
@click.option("--seed", default=0, show_default=True)
@_quiet_option
@_json_flag
def demo(out: str, epochs: int, seed: int, quiet: bool, as_json: bool) -> None:
    """Train, convert to int8, validate and run on the embedded handwritten digits (no network needed)."""
    from edgecnn.cli.progress import progress_enabled
    from edgecnn.demo import run_demo

    def stage(name: str) -> None:
        if progress_enabled(quiet):
            click.echo(f"== {name}", err=True)

    result = run_demo(
        out, epochs=epochs, seed=seed, on_stage=stage, on_epoch=epoch_printer(quiet), on_progress=stage_progress(quiet)
    )
    _emit(result, as_json, render.demo)
    if not result.report.passed:
        sys.exit(EXIT_GATE_FAILED)


@cli.command()
@_json_flag
def targets(as_json: bool) -> None:
    """List every target, whether it is usable on this machine, and if not, why and how to fix it."""
    from edgecnn.targets import list_targets

    statuses = list_targets()
    if as_json:
        click.echo(render.as_json({"targets": [s.to_dict() for s in statuses]}), nl=False)
    else:
        click.echo(render.target_table(statuses))


@cli.command()
@click.argument("model", type=click.Path())
@click.option(
    "--min-tpu-share",
    type=float,
    metavar="F",
    help="coral: fail (exit 1) when less than F (0-1) of the multiply-accumulates would run on the Edge TPU.",
)
@_target_options
@_json_flag
def check(model: str, as_json: bool, min_tpu_share: float | None, **options: Any) -> None:
    """Check that MODEL (a .tflite bundle) can run on a target: compatibility and budget findings.

    Exit 0 when no finding is an error, 1 when one is, 2 for bad input. For coral it is the Edge TPU
    pre-flight: each operation, where the compiler would cut the graph, and the share expected on the TPU.

    \b
    Examples:
      edgecnn check --target rpi model_int8.tflite
      edgecnn check --target coral model_int8.tflite --min-tpu-share 0.9
    """
    from edgecnn.targets import check_model

    report = check_model(model, _make_target(options, min_tpu_share=min_tpu_share))
    _emit(report, as_json, render.check_report)
    if not report.passed:
        sys.exit(EXIT_GATE_FAILED)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--runs", default=50, show_default=True, help="Timed runs.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs before them.")
@click.option("--batch", default=1, show_default=True, help="Images per run.")
@click.option("--images", type=click.Path(), help="Time on these real images (file or folder) instead of random ones.")
@click.option("--image-limit", "limit", default=100, show_default=True, help="Use at most N of those images.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@_target_options
@_quiet_option
@_json_flag
def bench(model: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Measure the latency (min/p50/p90/max) and throughput of MODEL on a target.

    The protocol of TFLite's benchmark_model: load and allocate (reported apart), warm-up runs untimed, then
    each run timed alone; inputs are set outside the timing.

    \b
    Examples:
      edgecnn bench model_int8.tflite --runs 200 --threads 2
      edgecnn bench --target rpi --host pi@raspberrypi model_int8.tflite --images photos/
    """
    from edgecnn.bench import bench_model

    target = _make_target(options)
    result = bench_model(model, target, on_progress=stage_progress(quiet), **options)
    _emit(result, as_json, render.bench_result)


@cli.group()
def export() -> None:
    """Export a model as source code for a device's own build (microcontrollers: TensorFlow Lite Micro)."""


@export.command("micro")
@click.argument("model", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Folder for the C++ files (created if missing).")
@click.option("--name", help="Prefix of the files and C symbols [the model file's stem].")
@click.option("--device", metavar="PROFILE", help="Check the model against this board's RAM and flash.")
@_json_flag
def export_micro(model: str, out: str, name: str | None, device: str | None, as_json: bool) -> None:
    """Write MODEL (an int8 .tflite bundle) as C++ for TensorFlow Lite Micro: the model as an aligned byte array,
    an op resolver with exactly its operations, and its settings (I/O shape and quantization, labels,
    preprocessing, the tensor arena size measured in the TFLite Micro interpreter plus a margin).

    Exit 1 when --device is given and the model does not fit the board.

    \b
    Example:
      edgecnn export micro model_int8.tflite --out firmware/model --name model --device nano33ble
    """
    from edgecnn.targets.micro_export import export_micro as write_export

    result = write_export(model, out, name=name, device=device)
    _emit(result, as_json, render.micro_export)
    if result.budget is not None and not result.budget.get("fits", True):
        click.echo(f"edgecnn: gate failed: the model does not fit {device}", err=True)
        sys.exit(EXIT_GATE_FAILED)


@cli.command(hidden=True)
def agent() -> None:
    """Serve a development machine over stdin/stdout (started over SSH by --target rpi --host)."""
    import os

    from edgecnn.targets.agent import serve

    # The protocol owns stdout: native libraries that print to file descriptor 1 must not corrupt it.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


cli.add_command(finetune)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgecnn")
