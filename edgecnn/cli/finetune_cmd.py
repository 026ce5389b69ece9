"""``edgecnn finetune``: quantization-aware fine-tuning of a trained model, converted to int8 TFLite.

Registered by ``edgecnn.cli.main`` (``cli.add_command(finetune)``); it does not import ``main``, so ``main`` can
import it at the top without a cycle.
"""

from __future__ import annotations

from typing import Any

import click

from edgecnn.cli import render
from edgecnn.cli.progress import epoch_printer, stage_progress, warn_skipped
from edgecnn.convert import IO_TYPES
from edgecnn.errors import UsageError


def _text(result: Any) -> str:
    """The conversion summary, then what fine-tuning reached."""
    qat = result.info.extra["qat"]
    metrics = qat["metrics"]
    line = (
        f"fine-tuned {qat['epochs']} epoch(s) with simulated int8 on {qat['num_train']} images: "
        f"accuracy {render.percent(metrics.get('accuracy', 0.0))}"
    )
    if "val_accuracy" in metrics:
        line += f", validation accuracy {render.percent(metrics['val_accuracy'])} ({qat['num_validation']} images)"
    return f"{line}\n{render.conversion(result)}"


@click.command()
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--qat", is_flag=True, help="Quantization-aware training (required: the only fine-tuning mode so far).")
@click.option("--out", "-o", required=True, type=click.Path(), help="The .tflite to write (model.json goes beside it).")
@click.option("--epochs", default=3, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--learning-rate", default=1e-4, show_default=True, help="Adam's learning rate (small: fine-tuning).")
@click.option("--calibration-size", default=200, show_default=True, help="Images from DATA that fix the I/O ranges.")
@click.option("--io", type=click.Choice(IO_TYPES), default="int8", show_default=True, help="Input/output type.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split, shuffling and calibration draw.")
@click.option("--validation-split", default=0.1, show_default=True, help="Share of each class held out.")
@click.option("--limit-per-class", type=int, help="Use only the first N images (by name) of each class.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def finetune(model: str, data: str, out: str, qat: bool, quiet: bool, as_json: bool, **options: Any) -> None:
    """Fine-tune a trained .keras MODEL on DATA with simulated int8 quantization and write an int8 .tflite.

    For when edgecnn convert's post-training quantization loses too much accuracy. The network is rebuilt in
    tf-keras, fine-tuned for a few epochs at a small learning rate on the training split of DATA (the split
    edgecnn train makes with the same seed), and converted to a full-integer int8 model with a static batch-1
    input and the same sidecar as convert. Needs the qat extra: pip install "edgecnn[qat]".

    \b
    Examples:
      edgecnn finetune model.keras photos/train --qat --out model_qat_int8.tflite --epochs 3
      edgecnn validate --reference model.keras --candidate model_qat_int8.tflite photos/test
    """
    if not qat:
        raise UsageError("edgecnn finetune needs --qat: quantization-aware training is the only fine-tuning mode")
    from edgecnn.train.qat import finetune_qat

    options["validation_fraction"] = options.pop("validation_split")
    result = finetune_qat(model, data, out, on_progress=stage_progress(quiet), on_epoch=epoch_printer(quiet), **options)
    if as_json:
        click.echo(render.as_json({**result.to_dict(), "qat": result.info.extra["qat"]}), nl=False)
    else:
        click.echo(_text(result))
    warn_skipped(result.skipped)
