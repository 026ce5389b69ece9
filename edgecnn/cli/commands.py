"""Every ``edgecnn`` command: parse the options, call one library function, render its result.

Library modules are imported inside the commands, so ``edgecnn --help`` loads neither numpy, Pillow nor an
interpreter. A result says itself whether its verdict passed (``passed``) and what to tell on stderr
(``messages()``); :func:`finish` prints it as text or JSON and turns a failed verdict into exit code 1.
"""

from __future__ import annotations

from typing import Any

import click

from edgecnn.build.choices import AUGMENTATIONS, IO_TYPES, PRESETS, QUANTIZE_MODES, STRATEGIES
from edgecnn.cli import render
from edgecnn.cli.options import (
    NUMBER,
    follow_links_option,
    input_options,
    json_flag,
    limit_option,
    min_reference_accuracy_option,
    pop_input_options,
    pop_target_options,
    quiet_option,
    seed_option,
    strict_option,
    target_options,
    trust_model_option,
)
from edgecnn.cli.progress import progress_callbacks, stage_printer, stage_progress
from edgecnn.errors import EXIT_VERDICT_FAILED


def finish(result: Any, *, as_json: bool, text: Any) -> None:
    """Print ``result`` (one JSON document with ``--json``, else people's text), its messages and skipped files on
    stderr, and exit 1 when its verdict failed."""
    click.echo(render.as_json(result) if as_json else text(result), nl=not as_json)
    for line in result.messages() if hasattr(result, "messages") else []:
        click.echo(f"edgecnn: {line}", err=True)
    skipped = getattr(result, "skipped", [])
    if skipped:
        click.echo(
            f"edgecnn: warning: skipped {len(skipped)} unreadable or non-image file(s), listed in the "
            f"{'JSON' if as_json else 'output'} (--strict makes this an error)",
            err=True,
        )
    if not getattr(result, "passed", True):
        click.get_current_context().exit(EXIT_VERDICT_FAILED)


def make_target(options: dict[str, Any], **more: Any) -> Any:
    """The target that ``--target`` and its options describe (options of one command only, such as check's
    ``--min-tpu-share``, come in ``more``)."""
    from edgecnn.targets import make_target as make

    chosen = pop_target_options(options)
    return make(chosen.pop("target"), **chosen, **more)


# ---------------------------------------------------------------------------------------------- the TensorFlow side


@click.command()
@click.argument("data", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="The .keras model to write.")
@click.option(
    "--preset",
    type=click.Choice(tuple(PRESETS)),
    default="default",
    show_default=True,
    help="The recipe: " + "; ".join(f"{name}: {summary}" for name, summary in PRESETS.items()) + ".",
)
@click.option("--image-size", type=int, help="Resize images to N x N [preset's: 32].")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 (grayscale) or 3 (RGB); guessed from the images.")
@click.option("--epochs", type=int, help="Passes over the images [preset's: default 20, cifar10 35].")
@click.option("--batch-size", type=int, help="Images per step [preset's: default 32, cifar10 128].")
@seed_option("Seed of the split, initial weights and shuffling.")
@click.option("--validation-split", type=NUMBER, default=0.1, show_default=True, help="Share of each class held out.")
@click.option("--learning-rate", type=NUMBER, help="Learning rate, the peak of a one-cycle schedule [preset's].")
@click.option("--filters", type=int, help="Filters in the first block (doubling per block) [preset's: 32, 16].")
@click.option(
    "--augment",
    type=click.Choice(AUGMENTATIONS),
    help="Random shifts and/or left-right flips while training (flips suit photos, not digits or text) "
    "[preset's: none, flip-shift].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its checkpoint (OUT-stem.checkpoint.keras, written every epoch).",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="none",
    show_default=True,
    help="none: one device; mirrored: every local GPU (else every logical CPU device); multi-worker: the "
    "machines of the TF_CONFIG environment variable, one edgecnn train each, the chief (worker 0) writing OUT. "
    "--batch-size stays the global batch.",
)
@limit_option
@strict_option
@follow_links_option
@quiet_option
@json_flag
def train(data: str, out: str, channels: str | None, quiet: bool, as_json: bool, **options: Any) -> None:
    """Train a classifier on an image folder DATA/<class>/<image> with a recipe (--preset).

    Options that are not given come from the preset. The model and its optimizer are saved after every epoch to
    OUT-stem.checkpoint.keras; --resume continues from it to the same final weights as an uninterrupted run.

    \b
    Examples:
      edgecnn train photos/train --out model.keras --image-size 32 --epochs 20
      edgecnn train photos/train --out resnet8.keras --preset cifar10 --epochs 3
      edgecnn train photos/train --out resnet8.keras --preset cifar10 --strategy mirrored
    """
    from edgecnn.build.train import train as train_model

    options["validation_fraction"] = options.pop("validation_split")
    result = train_model(
        data, out, channels=int(channels) if channels else None, **progress_callbacks(quiet), **options
    )
    finish(result, as_json=as_json, text=render.training if result.written else render.trained_in_step)


@click.command()
@click.argument("model", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="The .tflite to write (model.json goes beside it).")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default="int8", show_default=True)
@click.option("--calibration", type=click.Path(), help="Image folder to calibrate int8 ranges on (required for int8).")
@click.option("--calibration-size", default=200, show_default=True, help="Calibration images, class-balanced.")
@click.option("--io", type=click.Choice(IO_TYPES), help="Input/output type of int8 models [int8].")
@seed_option("Seed for choosing calibration images.")
@click.option(
    "--max-drop",
    type=NUMBER,
    help="Gate on --data: if int8 drops more (pp), recover automatically (more calibration, float layers, 16x8).",
)
@click.option("--data", type=click.Path(), help="Labelled held-out images the --max-drop gate is measured on.")
@limit_option
@min_reference_accuracy_option
@strict_option
@follow_links_option
@trust_model_option
@click.option(
    "--target",
    "-t",
    help="Convert for this target and build what it needs (coral: full int8, pre-flight, edgetpu_compiler).",
)
@input_options
@click.option("--name", help="Model name in the TFLite Metadata [MODEL's stem].")
@click.option("--description", help='Description in the TFLite Metadata ["Image classifier converted by edgecnn"].')
@click.option("--model-version", help="Model version in the TFLite Metadata [1].")
@click.option("--author", help="Author in the TFLite Metadata.")
@click.option("--license", help="License in the TFLite Metadata.")
@quiet_option
@json_flag
def convert(model: str, out: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Convert MODEL to TFLite with a static batch-1 input, TFLite Metadata and a sidecar.

    MODEL is a .keras from edgecnn train, or a model trained elsewhere: a .keras or .h5, a SavedModel folder, or a
    float .tflite from another converter (quantized with ai-edge-quantizer; --quantize none bundles it as it is).
    What such a model does not carry comes from --labels and --input-range (or --mean/--std, --bgr, --layout),
    e.g. resnet.h5 with --labels labels.txt --input-range -1,1. Channels-first inputs [1, 3, H, W] are recognised.

    With --max-drop and --data, an int8 model that drops more than allowed is recovered automatically: more
    calibration images, then the worst layers kept in float (fewest first), then 16-bit activations. Exit 1
    when nothing passes; the best attempt is then written as OUT's stem + .best-attempt.tflite. Exit 2, before
    any attempt, when the Keras model itself cannot classify --data (its accuracy below --min-reference-accuracy).

    With --target the conversion is what the target runs, and the target builds from it: for coral, the
    Edge TPU pre-flight, then edgetpu_compiler (when installed) writes OUT's stem + _edgetpu.tflite. Exit 1
    when the target cannot run the model.

    \b
    Examples:
      edgecnn convert model.keras --out model_int8.tflite --calibration photos/train
      edgecnn convert model.keras --out model_app.tflite --calibration photos/train --io uint8 --name digits
      edgecnn convert model.keras --out model_gated.tflite --calibration photos/train --max-drop 1 --data photos/test
      edgecnn convert model.keras --out model_coral.tflite --calibration photos/train --target coral --io uint8
      edgecnn convert model.keras --out model_float.tflite --quantize none
      edgecnn convert model_float.tflite --out model_float_int8.tflite --calibration photos/train --input-range 0,1
    """
    from edgecnn.build.convert import ModelCard
    from edgecnn.build.for_target import convert_for_target

    hints = pop_input_options(options)
    card = ModelCard(
        name=options.pop("name"),
        description=options.pop("description"),
        version=options.pop("model_version"),
        author=options.pop("author"),
        license=options.pop("license"),
    )
    result = convert_for_target(model, out, hints=hints, card=card, on_progress=stage_progress(quiet), **options)
    finish(result, as_json=as_json, text=render.target_conversion)


@click.command()
@click.argument("model", type=click.Path())
@click.option("--calibration", required=True, type=click.Path(), help="The calibration images (as for convert).")
@click.option("--data", type=click.Path(), help="Labelled images the model will see, to compare calibration with.")
@click.option("--candidate", type=click.Path(), help="An int8 .tflite converted from MODEL, to check it matches.")
@click.option("--calibration-size", default=200, show_default=True, help="Calibration images, class-balanced.")
@click.option("--data-limit", default=50, show_default=True, help="Images per class of --data to compare with.")
@seed_option("Seed for choosing calibration images.")
@strict_option
@follow_links_option
@trust_model_option
@quiet_option
@json_flag
def diagnose(model: str, calibration: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Find where int8 quantization of the .keras MODEL loses accuracy, and check the calibration set.

    Per layer: quantization error (TFLite's QuantizationDebugger), range, scale and zero point, worst first,
    and layers whose range one channel sets. Calibration: size, class balance, images far from --data,
    preprocessing of --candidate. Exit 1 when a finding is an error.

    \b
    Example:
      edgecnn diagnose model.keras --calibration photos/train --data photos/test --candidate model_int8.tflite
    """
    from edgecnn.build.diagnose import diagnose as run_diagnosis

    result = run_diagnosis(model, calibration, on_progress=stage_progress(quiet), **options)
    finish(result, as_json=as_json, text=render.diagnosis)


@click.command()
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--qat", is_flag=True, hidden=True, help="Quantization-aware training (the only mode; the default).")
@click.option("--out", "-o", required=True, type=click.Path(), help="The .tflite to write (model.json goes beside it).")
@click.option("--epochs", default=3, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--learning-rate", type=NUMBER, default=1e-4, show_default=True, help="Adam's learning rate (small).")
@click.option("--calibration-size", default=200, show_default=True, help="Images from DATA that fix the I/O ranges.")
@click.option("--io", type=click.Choice(IO_TYPES), default="int8", show_default=True, help="Input/output type.")
@seed_option("Seed of the split, shuffling and calibration draw.")
@click.option("--validation-split", type=NUMBER, default=0.1, show_default=True, help="Share of each class held out.")
@limit_option
@strict_option
@follow_links_option
@trust_model_option
@quiet_option
@json_flag
def finetune(model: str, data: str, out: str, qat: bool, quiet: bool, as_json: bool, **options: Any) -> None:
    """Fine-tune a trained .keras MODEL on DATA with simulated int8 quantization and write an int8 .tflite.

    Quantization-aware training, for when edgecnn convert's post-training quantization loses too much accuracy:
    the network is rebuilt in tf-keras, fine-tuned for a few epochs at a small learning rate on the training
    split of DATA (the split edgecnn train makes with the same seed), and converted to a full-integer int8 model
    with a static batch-1 input and the same sidecar as convert. Needs the qat extra: pip install "edgecnn[qat]".

    \b
    Examples:
      edgecnn finetune model.keras photos/train --out model_qat_int8.tflite --epochs 3
      edgecnn validate --reference model.keras --candidate model_qat_int8.tflite photos/test
    """
    from edgecnn.build.qat import finetune_qat

    options["validation_fraction"] = options.pop("validation_split")
    result = finetune_qat(model, data, out, **progress_callbacks(quiet), **options)
    finish(result, as_json=as_json, text=render.finetuning)


# ------------------------------------------------------------------------------------------ evidence and the demo


@click.command()
@click.argument("data", type=click.Path())
@click.option("--reference", "-r", required=True, type=click.Path(), help="Float model: .keras or .tflite.")
@click.option("--candidate", "-c", required=True, type=click.Path(), help="The .tflite model that will ship.")
@click.option(
    "--max-drop", type=NUMBER, default=1.0, show_default=True, help="Largest allowed accuracy drop, in points."
)
@click.option("--min-agreement", type=NUMBER, help="Smallest allowed top-1 agreement, a fraction (e.g. 0.99).")
@min_reference_accuracy_option
@limit_option
@click.option("--batch-size", default=64, show_default=True)
@strict_option
@follow_links_option
@trust_model_option
@click.option(
    "--stages", is_flag=True, help="Also compare every step here: Keras float → TFLite float → int8 → int8 reference."
)
@click.option("--report", "report_dir", type=click.Path(), help="Write report.html and its charts into DIR.")
@click.option("--junit", type=click.Path(), help="Write the gates as JUnit XML test cases to FILE.")
@click.option("--json-out", type=click.Path(), metavar="FILE", help="Write the JSON document to FILE.")
@click.option(
    "--calibration", type=click.Path(), help="Calibration images: adds the per-layer error chart to --report."
)
@input_options
@target_options
@quiet_option
@json_flag
def validate(data: str, reference: str, candidate: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Compare REFERENCE and CANDIDATE on the labelled image folder DATA and gate on the result.

    Exit 0 when every gate passes, 1 when one fails; a reference that cannot classify DATA (below
    --min-reference-accuracy) fails too, and labels with no images in DATA are named. With --target the
    candidate runs there (on a Raspberry Pi over SSH with --target rpi --host pi@raspberrypi); the reference
    runs here. --report writes a self-contained
    report.html (implies --stages; --calibration adds the per-layer errors), --junit the gates as JUnit XML,
    --json-out the JSON document: all also when a gate fails.

    Labels and preprocessing come from the candidate's sidecar, else its TFLite Metadata, else --labels and
    --input-range (or --mean/--std); a reference from elsewhere (any Keras model or float .tflite) is fed like
    the candidate.

    \b
    Examples:
      edgecnn validate --reference model.keras --candidate model_int8.tflite photos/test --max-drop 1.0
      edgecnn validate -r model.keras -c model_int8.tflite photos/test --report report/ --junit gates.xml
      edgecnn validate -r model.keras -c model_int8.tflite photos/test --report report/ --calibration photos/train
      edgecnn validate -r model.keras -c model_int8.tflite photos/test --target micro --json
    """
    from edgecnn.workflows.validate import validate as run_validation

    target = make_target(options)
    hints = pop_input_options(options)
    result = run_validation(
        reference, candidate, data, target=target, hints=hints, on_progress=stage_progress(quiet), **options
    )
    finish(result, as_json=as_json, text=render.validation)


@click.command()
@click.option(
    "--out", "-o", default="edgecnn-demo", show_default=True, type=click.Path(), help="Folder for everything."
)
@click.option("--epochs", default=30, show_default=True)
@seed_option("Seed of the split, training and calibration.")
@quiet_option
@json_flag
def demo(out: str, epochs: int, seed: int, quiet: bool, as_json: bool) -> None:
    """Train, convert to int8, validate and run on the embedded handwritten digits (no network needed).

    Writes the digits as PNG folders, model.keras, model_int8.tflite and its sidecar under --out, and exits 1
    when the int8 model drops more than 0.5 points against the float one.

    \b
    Example:
      edgecnn demo --out edgecnn-demo --epochs 30
    """
    from edgecnn.workflows.demo import run_demo

    result = run_demo(out, epochs=epochs, seed=seed, on_stage=stage_printer(quiet), **progress_callbacks(quiet))
    finish(result, as_json=as_json, text=render.demo)


# ---------------------------------------------------------------------------------------------------- the targets


@click.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", "k", default=3, show_default=True, help="Classes shown per image.")
@strict_option
@follow_links_option
@trust_model_option
@input_options
@target_options
@quiet_option
@json_flag
def run(model: str, inputs: tuple[str, ...], quiet: bool, as_json: bool, **options: Any) -> None:
    """Classify images (files or folders) with MODEL.

    Labels and preprocessing come from MODEL's sidecar, else its TFLite Metadata, else --labels and
    --input-range (or --mean/--std); sources that disagree are an error (exit 2).

    \b
    Examples:
      edgecnn run model_int8.tflite photos/test --top-k 3
      edgecnn run --target micro model_int8.tflite photos/test --json
      edgecnn run model_float_int8.tflite photos/test --input-range 0,1
    """
    from edgecnn.workflows.run import classify

    target = make_target(options)
    hints = pop_input_options(options)
    result = classify(model, list(inputs), target=target, hints=hints, on_progress=stage_progress(quiet), **options)
    finish(result, as_json=as_json, text=render.predictions)


@click.command()
@json_flag
def targets(as_json: bool) -> None:
    """List every target, whether it is usable on this machine, and if not, why and how to fix it.

    \b
    Example:
      edgecnn targets --json
    """
    from edgecnn.targets import list_targets

    finish(list_targets(), as_json=as_json, text=render.target_table)


@click.command()
@click.argument("model", type=click.Path())
@click.option(
    "--min-tpu-share",
    type=NUMBER,
    metavar="F",
    help="coral: fail (exit 1) when less than F (0-1) of the multiply-accumulates would run on the Edge TPU.",
)
@target_options
@json_flag
def check(model: str, as_json: bool, min_tpu_share: float | None, **options: Any) -> None:
    """Check that MODEL (a .tflite bundle) can run on a target: compatibility and budget findings.

    Exit 0 when no finding is an error, 1 when one is. For coral it is the Edge TPU pre-flight: each operation,
    where the compiler would cut the graph, and the share expected on the TPU. For micro, the arena measured in
    TensorFlow Lite Micro against a board's RAM and flash.

    \b
    Examples:
      edgecnn check --target rpi model_int8.tflite
      edgecnn check --target coral model_int8.tflite --min-tpu-share 0.9
      edgecnn check --target micro --board nano33ble model_int8.tflite
    """
    from edgecnn.targets import check_model

    report = check_model(model, make_target(options, min_tpu_share=min_tpu_share))
    finish(report, as_json=as_json, text=render.check_report)


@click.command()
@click.argument("model", type=click.Path())
@json_flag
def inspect(model: str, as_json: bool) -> None:
    """Describe any .tflite MODEL without running it: a text Netron. No sidecar or interpreter needed.

    The file (size, SHA-256, description, schema version), every input and output (shape, dtype, quantization
    per tensor or per channel), the operators by kind with their counts and versions (custom ones flagged), the
    weights and multiply-accumulates per inference, the image input's layout (NHWC or NCHW), and the TFLite
    Metadata when the file carries some. Exit 2 when MODEL is not a readable TFLite model.

    \b
    Examples:
      edgecnn inspect model_int8.tflite
      edgecnn inspect model_int8.tflite --json
    """
    from edgecnn.model.inspect import inspect_model

    finish(inspect_model(model), as_json=as_json, text=render.inspection)


@click.command()
@click.argument("model", type=click.Path())
@click.option("--runs", default=50, show_default=True, help="Timed runs.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs before them.")
@click.option("--batch", default=1, show_default=True, help="Images per run.")
@click.option("--images", type=click.Path(), help="Time on these real images (file or folder) instead of random ones.")
@click.option("--image-limit", "limit", default=100, show_default=True, help="Use at most N of those images.")
@strict_option
@follow_links_option
@target_options
@quiet_option
@json_flag
def bench(model: str, quiet: bool, as_json: bool, **options: Any) -> None:
    """Measure the latency (min/p50/p90/max) and throughput of MODEL on a target.

    The protocol of TFLite's benchmark_model: load and allocate (reported apart), warm-up runs untimed, then
    each run timed alone; inputs are set outside the timing.

    \b
    Examples:
      edgecnn bench model_int8.tflite --runs 200 --threads 2
      edgecnn bench --target rpi model_int8.tflite --images photos/test
    """
    from edgecnn.workflows.bench import bench_model

    target = make_target(options)
    result = bench_model(model, target, on_progress=stage_progress(quiet), **options)
    finish(result, as_json=as_json, text=render.bench_result)


@click.group()
def export() -> None:
    """Export a model as source code for a device's own build (microcontrollers: TensorFlow Lite Micro).

    \b
    Example:
      edgecnn export micro model_int8.tflite --out firmware/model --name model --board nano33ble
    """


@export.command("micro")
@click.argument("model", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Folder for the C++ files (created if missing).")
@click.option("--name", help="Prefix of the files and C symbols [the model file's stem].")
@click.option("--board", metavar="NAME", help="Check the model against this board's RAM and flash.")
@click.option(
    "--firmware", is_flag=True, help="Also write a firmware project (Makefile, main.cc) for the host and Cortex-M."
)
@json_flag
def export_micro(model: str, out: str, name: str | None, board: str | None, firmware: bool, as_json: bool) -> None:
    """Write MODEL (an int8 .tflite bundle) as C++ for TensorFlow Lite Micro: the model as an aligned byte array,
    an op resolver with exactly its operations, and its settings (I/O shape and quantization, labels,
    preprocessing, the tensor arena size measured in the TFLite Micro interpreter plus a margin).

    With --firmware, also a make project that builds it with TensorFlow Lite Micro for this machine or a
    Cortex-M board (TFLM's sources from --tflm-dir of make, see targets/micro/README.md).

    Exit 1 when --board is given and the model does not fit the board.

    \b
    Example:
      edgecnn export micro model_int8.tflite --out firmware/model --name model --board nano33ble
      edgecnn export micro model_int8.tflite --out fw --firmware
    """
    if firmware:
        from edgecnn.targets.micro.firmware.project import export_project as write_export
    else:
        from edgecnn.targets.micro.export import export_micro as write_export

    result = write_export(model, out, name=name, board=board)
    finish(result, as_json=as_json, text=render.micro_export)


@click.command(hidden=True)
def agent() -> None:
    """Serve a development machine on stdin/stdout: what --target rpi --host starts on the Pi over SSH.

    \b
    Example (what the development machine runs; the agent answers until its input ends):
      edgecnn agent
    """
    from edgecnn.targets.agent import serve_stdio

    serve_stdio()


COMMANDS = (train, convert, diagnose, finetune, validate, demo, run, targets, check, inspect, bench, export, agent)
"""Every command, in the order ``edgecnn --help`` lists them."""
