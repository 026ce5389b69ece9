"""The report of ``edgecnn validate``: a self-contained HTML page with charts for people, JUnit XML for CI.

:func:`write_report` turns the dict of :meth:`edgecnn.evidence.validate.ValidationReport.to_dict` into ``report.html``
(charts embedded as ``data:`` PNGs; no network, CSS, script or font from outside) and the same charts as PNG
files. :func:`write_junit` writes the gates as JUnit test cases. Runtime side: Pillow and the standard
library only (charts are drawn with ``ImageDraw`` and Pillow's built-in font), so it works on a device.

Every number on the page goes through one formatter per kind (:data:`FORMATTERS`) and carries the JSON
path it shows (``data-json="per_class.3.candidate_accuracy"``), so a test can check the page against the dict.
Optional keys are rendered when present: ``stages``, ``layers``, ``sizes`` and ``latency_ms``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from edgecnn import __version__
from edgecnn.errors import UsageError
from edgecnn.runtime.files import check_folder, check_output_path, write_bytes_atomic
from edgecnn.units import MISSING, fmt_bytes, fmt_float, fmt_int, fmt_ms, fmt_percent, fmt_pp, fmt_ratio

REPORT_FILE = "report.html"
#: Every file :func:`write_report` may write besides ``report.html``.
CHART_FILES = ("confusion_reference.png", "confusion_candidate.png", "per_class.png", "stages.png", "layers.png")
#: Uniform rounding alone gives an RMSE of 1/sqrt(12) quantization steps: the floor of ``rmse_scale``.
ROUNDING_RMSE = 1.0 / math.sqrt(12.0)
#: Counts are written in the confusion cells up to this many classes.
MAX_CLASSES_WITH_COUNTS = 20
MAX_SKIPPED_ROWS = 200
MAX_LAYER_BARS = 30

RGB = tuple[int, int, int]
REFERENCE_COLOR: RGB = (37, 99, 178)
CANDIDATE_COLOR: RGB = (230, 115, 0)
STAGE_COLOR: RGB = (84, 96, 115)
PASS_COLOR: RGB = (26, 127, 55)
FAIL_COLOR: RGB = (200, 30, 45)
_INK: RGB = (31, 35, 40)
_MUTED: RGB = (96, 104, 114)
_GRID: RGB = (222, 226, 231)
_STRIPE: RGB = (246, 248, 250)
_WHITE: RGB = (255, 255, 255)


#: The formatter of each kind of number; ``data-kind`` on the page names the one used.
FORMATTERS: dict[str, Callable[[Any], str]] = {
    "percent": fmt_percent,
    "pp": fmt_pp,
    "pp_change": partial(fmt_pp, signed=True),
    "float": fmt_float,
    "int": fmt_int,
    "bytes": fmt_bytes,
    "ms": fmt_ms,
}
# A gate's value and threshold are in the unit of what it checks.
_GATE_KINDS = {"max-drop": "pp", "min-agreement": "percent", "min-reference-accuracy": "percent"}


def gate_kind(name: str) -> str:
    """The :data:`FORMATTERS` kind of a gate's value and threshold (``float`` for gates not known here)."""
    return _GATE_KINDS.get(name, "float")


def describe_gate(gate: Mapping[str, Any]) -> str:
    """``name: rule`` with the numbers filled in, e.g. ``max-drop: accuracy drop 1.20 pp, allowed at most 1.00 pp``."""
    try:
        rule = str(gate["rule"]).format(value=gate["value"], threshold=gate["threshold"])
    except (KeyError, IndexError, ValueError, TypeError):
        rule = f"{gate.get('rule', '')} (value {gate.get('value')}, threshold {gate.get('threshold')})"
    return f"{gate.get('name', 'gate')}: {rule}"


# ------------------------------------------------------------------------------------------ public API


def check_report_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Check, before a long validation, that the report can be written in ``out_dir`` (created when it is).

    Raises:
        UsageError: ``out_dir`` is a file or cannot be created or written, or ``report.html`` in it is a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--report {out} is a file: give a folder (report.html and the charts go inside)")
    check_folder(out, what="report folder")
    check_output_path(out / REPORT_FILE)
    return out


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.html`` and the chart PNGs into ``out_dir`` (created if missing).

    Args:
        report: :meth:`edgecnn.evidence.validate.ValidationReport.to_dict`, optionally with ``stages``, ``layers``,
            ``sizes`` and ``latency_ms``.
        out_dir: the report folder. Each file is written atomically; a chart from an earlier run that this
            report has no data for (``layers.png``, ``stages.png``) is removed so the folder stays consistent.

    Returns:
        The path of ``report.html``.

    Raises:
        UsageError: the folder cannot be used (see :func:`check_report_dir`).
        OSError: a write failed (disk full...).
    """
    out = check_report_dir(out_dir)
    charts = render_charts(report)
    for chart in charts.values():
        write_bytes_atomic(out / chart.name, chart.png)
    for stale in set(CHART_FILES) - set(charts):
        (out / stale).unlink(missing_ok=True)
    page = out / REPORT_FILE
    write_bytes_atomic(page, render_html(report, charts).encode("utf-8"))
    return page


def write_junit(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the gates as JUnit XML: one test case per gate, a ``<failure>`` for each gate that failed.

    Args:
        report: :meth:`edgecnn.evidence.validate.ValidationReport.to_dict`.
        path: the XML file; its folder must exist. Written atomically.

    Returns:
        ``path``.

    Raises:
        UsageError: the folder does not exist or ``path`` is a folder.
    """
    out = check_output_path(path)
    write_bytes_atomic(out, junit_xml(report))
    return out


# -------------------------------------------------------------------------------------------- JUnit


def junit_xml(report: Mapping[str, Any]) -> bytes:
    """The JUnit XML document of :func:`write_junit`, UTF-8 with an XML declaration."""
    gates = list(report.get("gates") or [])
    failures = sum(1 for g in gates if not g.get("passed"))
    counts = {"tests": str(max(len(gates), 1)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", {"name": "edgecnn", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "edgecnn validate", **counts})
    properties = ET.SubElement(suite, "properties")
    for key in (
        "reference_accuracy",
        "candidate_accuracy",
        "accuracy_drop_pp",
        "agreement",
        "num_images",
        "num_skipped",
        "candidate_target",
        "candidate_runtime",
    ):
        if key in report:
            ET.SubElement(properties, "property", {"name": key, "value": str(report[key])})
    for gate in gates:
        case = ET.SubElement(suite, "testcase", {"classname": "edgecnn.validate", "name": str(gate.get("name"))})
        line = describe_gate(gate)
        if gate.get("passed"):
            ET.SubElement(case, "system-out").text = line
        else:
            failure = ET.SubElement(case, "failure", {"message": line, "type": "GateFailed"})
            failure.text = f"{line}\nvalue: {gate.get('value')}\nthreshold: {gate.get('threshold')}"
    if not gates:
        case = ET.SubElement(suite, "testcase", {"classname": "edgecnn.validate", "name": "validation ran"})
        ET.SubElement(case, "system-out").text = f"no gates; {report.get('num_images', 0)} images compared"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# ------------------------------------------------------------------------------------- drawing basics


@dataclass(frozen=True)
class Chart:
    """One rendered chart: its file name, PNG bytes, pixel size and a text alternative."""

    name: str
    png: bytes
    size: tuple[int, int]
    alt: str


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


@cache
def _font_box(font: Any) -> tuple[float, float]:
    """Top and bottom of tall text at y=0, so text of one font shares a vertical centre."""
    box = font.getbbox("Hgjy|")
    return box[1], box[3]


def _text_width(text: str, font: Any) -> float:
    return float(font.getlength(text))


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Any, fill: RGB, anchor: str) -> None:
    """Draw ``text`` with ``anchor``: horizontal ``l``/``m``/``r`` then vertical ``t``/``m``/``b``."""
    x, y = xy
    width = _text_width(text, font)
    top, bottom = _font_box(font)
    x -= {"l": 0.0, "m": width / 2, "r": width}[anchor[0]]
    y -= {"t": top, "m": (top + bottom) / 2, "b": bottom}[anchor[1]]
    draw.text((round(x), round(y)), text, font=font, fill=fill)


def _fit(text: str, font: Any, max_width: float) -> str:
    """``text``, cut with an ellipsis to fit ``max_width`` pixels."""
    if _text_width(text, font) <= max_width:
        return text
    while text and _text_width(text + "…", font) > max_width:
        text = text[:-1]
    return text + "…"


def _vertical_text(image: Image.Image, xy: tuple[int, int], text: str, font: Any, fill: RGB, anchor: str) -> None:
    """Draw ``text`` turned 90° (read bottom to top); ``anchor`` is ``mt`` (centre x, top y) or ``mm``."""
    bottom = _font_box(font)[1]
    width, height = math.ceil(_text_width(text, font)) + 2, math.ceil(bottom) + 2
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text((1, 1), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    x = xy[0] - mask.width // 2
    y = xy[1] - (mask.height // 2 if anchor == "mm" else 0)
    image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)


def _mix(color: RGB, share: float) -> RGB:
    """``color`` at ``share`` (0: white, 1: the full colour)."""
    share = min(max(share, 0.0), 1.0)
    return tuple(round(255 + (c - 255) * share) for c in color)  # type: ignore[return-value]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _legend(draw: ImageDraw.ImageDraw, x: float, y: float, entries: Sequence[tuple[str, RGB]]) -> None:
    font = _font(14)
    for name, color in entries:
        draw.rectangle((x, y - 6, x + 12, y + 6), fill=color)
        _text(draw, (x + 18, y), name, font, _INK, "lm")
        x += 18 + _text_width(name, font) + 22


def _nice_ticks(maximum: float, *, count: int = 5) -> list[float]:
    """Round tick values from 0 covering ``maximum`` (steps of 1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


# ---------------------------------------------------------------------------------- confusion matrix


def _confusion_image(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str, color: RGB) -> Image.Image:
    """Heatmap of ``[true][predicted]`` counts, each cell shaded by its share of the true class's images."""
    k = len(matrix)
    cell = max(4, min(40, 600 // max(k, 1)))
    gap = 1 if cell >= 8 else 0
    label_font, title_font, axis_font = _font(13), _font(18), _font(13)
    count_font = _font(max(9, min(15, round(cell * 0.36))))
    names = [_fit(str(label), label_font, 130) for label in list(labels)[:k]] if cell >= 10 else []
    label_w = math.ceil(max((_text_width(n, label_font) for n in names), default=0))
    pad, axis_w = 16, 24
    left, top = pad + axis_w + label_w + 8, 62
    grid = cell * k
    legend_y = top + grid + 8 + label_w + 8 + 26
    width = max(left + grid + pad, 380)
    image = Image.new("RGB", (width, legend_y + 44), _WHITE)
    draw = ImageDraw.Draw(image)

    total = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(k))
    draw.rounded_rectangle((pad, 14, pad + 16, 30), radius=3, fill=color)
    _text(draw, (pad + 24, 22), title, title_font, _INK, "lm")
    subtitle = f"accuracy {fmt_percent(correct / total if total else None)} on {fmt_int(total)} images"
    _text(draw, (pad, 44), subtitle, _font(13), _MUTED, "lm")

    draw.rectangle((left - gap, top - gap, left + grid, top + grid), fill=_GRID)
    for i, row in enumerate(matrix):
        row_total = sum(row)
        for j, count in enumerate(row):
            share = count / row_total if row_total else 0.0
            shade = share**0.6
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1 - gap, y0 + cell - 1 - gap), fill=_mix(color, shade))
            if k <= MAX_CLASSES_WITH_COUNTS and count:
                text = str(count)
                if _text_width(text, count_font) <= cell - 3:
                    centre = (x0 + (cell - gap) / 2, y0 + (cell - gap) / 2)
                    _text(draw, centre, text, count_font, _WHITE if shade > 0.55 else _INK, "mm")
    if gap:  # frame the diagonal (correct predictions)
        edge = tuple(round(c * 0.55) for c in color)
        for i in range(k):
            x0, y0 = left + i * cell, top + i * cell
            draw.rectangle((x0 - 1, y0 - 1, x0 + cell - gap, y0 + cell - gap), outline=edge)
    for i, name in enumerate(names):
        _text(draw, (left - 6, top + i * cell + cell / 2), name, label_font, _INK, "rm")
        _vertical_text(image, (left + i * cell + cell // 2, top + grid + 6), name, label_font, _INK, "mt")
    _vertical_text(image, (pad + axis_w // 2, top + grid // 2), "true class", axis_font, _MUTED, "mm")
    _text(draw, (left + grid / 2, legend_y - 14), "predicted class", axis_font, _MUTED, "mm")
    _colour_scale(image, draw, (left, legend_y + 8), min(grid, 240), color)
    return image


def _colour_scale(image: Image.Image, draw: ImageDraw.ImageDraw, xy: tuple[int, int], width: int, color: RGB) -> None:
    """The shade legend: share of the true class's images, 0% to 100%."""
    x, y = xy
    width = max(width, 120)
    for i in range(width):
        draw.line((x + i, y, x + i, y + 10), fill=_mix(color, (i / (width - 1)) ** 0.6))
    draw.rectangle((x, y, x + width - 1, y + 10), outline=_GRID)
    font = _font(12)
    _text(draw, (x, y + 22), "0%", font, _MUTED, "lm")
    _text(draw, (x + width, y + 22), "100% of the true class", font, _MUTED, "rm")


# -------------------------------------------------------------------------------------- bar charts


@dataclass(frozen=True)
class _Series:
    name: str
    color: RGB
    values: Sequence[float | None]


def _bar_image(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[_Series],
    ticks: Sequence[float],
    tick_text: Callable[[float], str],
    value_text: Callable[[float], str],
    marker: tuple[float, str] | None = None,
) -> Image.Image:
    """Horizontal bars, one group per label and one bar per series, with a legend and vertical grid lines."""
    label_font, value_font, tick_font = _font(14), _font(12), _font(12)
    names = [_fit(str(label), label_font, 240) for label in labels]
    pad, width = 16, 920
    label_w = math.ceil(max((_text_width(n, label_font) for n in names), default=0))
    left, right = pad + label_w + 12, width - pad - 78
    bar_h = 14 if len(series) > 1 else 18
    group_h = len(series) * bar_h + (len(series) - 1) * 2
    row_h = group_h + 12
    top = 98 if marker else 84
    height = top + row_h * len(labels) + pad
    image = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(image)
    _text(draw, (pad, 22), title, _font(18), _INK, "lm")
    _legend(draw, pad, 50, [(s.name, s.color) for s in series])
    axis_max = ticks[-1] or 1.0

    def x_of(value: float) -> float:
        return left + (right - left) * min(max(value, 0.0), axis_max) / axis_max

    for i in range(len(labels)):
        if i % 2:
            draw.rectangle((pad, top + i * row_h, width - pad, top + (i + 1) * row_h - 1), fill=_STRIPE)
    for tick in ticks:
        x = x_of(tick)
        draw.line((x, top - 4, x, height - pad), fill=_GRID)
        _text(draw, (x, top - 10), tick_text(tick), tick_font, _MUTED, "mb")
    if marker is not None:
        _dashed_line(draw, x_of(marker[0]), top - 2, height - pad, _INK)
        _text(draw, (x_of(marker[0]) + 4, top - 26), marker[1], tick_font, _INK, "lb")
    draw.line((left, top - 4, left, height - pad), fill=_MUTED)
    for i, name in enumerate(names):
        y = top + i * row_h + 6
        _text(draw, (left - 8, y + group_h / 2), name, label_font, _INK, "rm")
        for s_index, s in enumerate(series):
            value = s.values[i]
            y0 = y + s_index * (bar_h + 2)
            if value is None:
                _text(draw, (left + 4, y0 + bar_h / 2), "n/a", value_font, _MUTED, "lm")
                continue
            end = x_of(value)
            if end >= left + 1:
                draw.rectangle((left + 1, y0, end, y0 + bar_h - 1), fill=s.color)
            _text(draw, (end + 4, y0 + bar_h / 2), value_text(value), value_font, _INK, "lm")
    return image


def _dashed_line(draw: ImageDraw.ImageDraw, x: float, y0: float, y1: float, fill: RGB) -> None:
    y = y0
    while y < y1:
        draw.line((x, y, x, min(y + 5, y1)), fill=fill, width=1)
        y += 9


def _percent_tick(value: float) -> str:
    return f"{100 * value:.0f}%"


def _per_class_image(report: Mapping[str, Any]) -> Image.Image:
    rows = list(report.get("per_class") or [])
    return _bar_image(
        title="Per-class accuracy: reference vs candidate",
        labels=[r.get("label", "") for r in rows],
        series=[
            _Series("reference", REFERENCE_COLOR, [r.get("reference_accuracy") for r in rows]),
            _Series("candidate", CANDIDATE_COLOR, [r.get("candidate_accuracy") for r in rows]),
        ],
        ticks=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        tick_text=_percent_tick,
        value_text=fmt_percent,
    )


def _stages_image(stages: Sequence[Mapping[str, Any]]) -> Image.Image:
    return _bar_image(
        title="Accuracy at each stage of the conversion",
        labels=[s.get("name", "") for s in stages],
        series=[_Series("top-1 accuracy", STAGE_COLOR, [s.get("accuracy") for s in stages])],
        ticks=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        tick_text=_percent_tick,
        value_text=fmt_percent,
    )


def _layers_image(layers: Sequence[Mapping[str, Any]]) -> Image.Image:
    ranked = sorted(layers, key=lambda layer: -(layer.get("rmse_scale") or 0.0))[:MAX_LAYER_BARS]
    values = [layer.get("rmse_scale") for layer in ranked]
    top = max([v for v in values if v is not None] + [ROUNDING_RMSE * 1.2])
    title = "Quantization error per layer (RMSE in quantization steps, worst first)"
    if len(layers) > len(ranked):
        title += f", {len(ranked)} of {len(layers)}"
    return _bar_image(
        title=title,
        labels=[f"{layer.get('name', '')} ({layer.get('op', '?')})" for layer in ranked],
        series=[_Series("RMSE / scale of the int8 output", CANDIDATE_COLOR, values)],
        ticks=_nice_ticks(top * 1.05),
        tick_text=lambda t: f"{t:g}",
        value_text=fmt_float,
        marker=(ROUNDING_RMSE, f"rounding alone: 1/sqrt(12) = {ROUNDING_RMSE:.3f}"),
    )


def render_charts(report: Mapping[str, Any]) -> dict[str, Chart]:
    """Every chart the report has data for, by file name (see :data:`CHART_FILES`)."""
    labels = list(report.get("labels") or [])
    images: dict[str, tuple[Image.Image, str]] = {}
    for role, color in (("reference", REFERENCE_COLOR), ("candidate", CANDIDATE_COLOR)):
        matrix = report.get(f"{role}_confusion")
        if matrix:
            image = _confusion_image(matrix, labels, title=f"{role.capitalize()} model", color=color)
            images[f"confusion_{role}.png"] = (image, f"confusion matrix of the {role} model")
    if report.get("per_class"):
        images["per_class.png"] = (_per_class_image(report), "per-class accuracy of both models")
    stages = _stage_data(report).get("stages")
    if stages:
        images["stages.png"] = (_stages_image(stages), "accuracy at each conversion stage")
    if report.get("layers"):
        images["layers.png"] = (_layers_image(report["layers"]), "quantization error of each layer")
    return {name: Chart(name, _png(image), image.size, alt) for name, (image, alt) in images.items()}


# -------------------------------------------------------------------------------------------- HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _hex(color: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _get(data: Any, path: str) -> Any:
    """The value at a dotted path (``per_class.3.label``), or None."""
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, Sequence) and not isinstance(data, str) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _num(report: Mapping[str, Any], path: str, kind: str, *, tag: str = "td", cls: str = "num") -> str:
    """An element showing the number at ``path``, formatted by kind and tagged with its JSON path."""
    text = FORMATTERS[kind](_get(report, path))
    return f'<{tag} class="{cls}" data-json="{_e(path)}" data-kind="{kind}">{_e(text)}</{tag}>'


def _figure(chart: Chart) -> str:
    """The chart inline, as a ``data:`` URI, at its natural size (scaled down on narrow screens)."""
    data = base64.b64encode(chart.png).decode("ascii")
    width, height = chart.size
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{_e(chart.alt)}"></figure>'
    )


def _table(head: Sequence[str], rows: Sequence[str], *, cls: str = "", numeric: Sequence[int] = ()) -> str:
    """A table; the headers of the ``numeric`` columns are right-aligned like their numbers."""
    header = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(head))
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _section(title: str, body: str, *, anchor: str, note: str = "") -> str:
    intro = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{anchor}"><h2>{title}</h2>{intro}{body}</section>'


def _header(report: Mapping[str, Any]) -> str:
    passed = bool(report.get("passed"))
    gates = list(report.get("gates") or [])
    failed = [str(g.get("name")) for g in gates if not g.get("passed")]
    if not gates:
        detail = "no gates were set"
    elif passed:
        detail = f"all {len(gates)} gate(s) passed"
    else:
        detail = f"{len(failed)} of {len(gates)} gate(s) failed: {', '.join(failed)}"
    where = str(report.get("candidate_target") or "host")
    runtime = report.get("candidate_runtime")
    ran = f"candidate ran on <b>{_e(where)}</b>" + (f" with <b>{_e(runtime)}</b>" if runtime else "")
    return (
        f'<header class="verdict {"pass" if passed else "fail"}"><div class="wrap">'
        '<div class="kicker">edgecnn validate · int8 candidate vs reference</div>'
        f'<div class="word" data-verdict="{"PASSED" if passed else "FAILED"}">{"PASSED" if passed else "FAILED"}</div>'
        f'<div class="detail">{_e(detail)} · {ran}</div></div></header>'
    )


def _headline(report: Mapping[str, Any]) -> str:
    cards = [
        ("Reference accuracy", "reference_accuracy", "percent", "ref"),
        ("Candidate accuracy", "candidate_accuracy", "percent", "cand"),
        ("Accuracy drop", "accuracy_drop_pp", "pp", ""),
        ("Top-1 agreement", "agreement", "percent", ""),
        ("Images", "num_images", "int", ""),
        ("Skipped files", "num_skipped", "int", ""),
    ]
    body = "".join(
        f'<div class="card {cls}"><div class="label">{title}</div>'
        f"{_num(report, key, kind, tag='div', cls='value')}</div>"
        for title, key, kind, cls in cards
    )
    return f'<div class="cards">{body}</div>'


def _pill(passed: bool) -> str:
    return f'<span class="pill {"pass" if passed else "fail"}">{"PASS" if passed else "FAIL"}</span>'


def _gates(report: Mapping[str, Any]) -> str:
    gates = list(report.get("gates") or [])
    if not gates:
        return _section("Gates", '<p class="note">No gates were set: nothing could fail.</p>', anchor="gates")
    rows = []
    for i, gate in enumerate(gates):
        kind = gate_kind(str(gate.get("name")))
        rule = describe_gate(gate).split(": ", 1)[-1]
        rows.append(
            f'<tr class="{"" if gate.get("passed") else "bad"}"><td><code>{_e(gate.get("name"))}</code></td>'
            f"{_num(report, f'gates.{i}.value', kind)}{_num(report, f'gates.{i}.threshold', kind)}"
            f"<td>{_e(rule)}</td><td>{_pill(bool(gate.get('passed')))}</td></tr>"
        )
    return _section(
        "Gates", _table(["Gate", "Value", "Threshold", "Rule", "Result"], rows, numeric=(1, 2)), anchor="gates"
    )


def _confusion(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    figures = [
        _figure(charts[name]) for name in ("confusion_reference.png", "confusion_candidate.png") if name in charts
    ]
    note = (
        "Rows are the true class, columns the predicted class; each cell counts images and is shaded by its "
        "share of the row. Compare the two: a cell that changes is where the candidate decides differently."
    )
    if len(report.get("labels") or []) > MAX_CLASSES_WITH_COUNTS:
        note += f" Counts are left out above {MAX_CLASSES_WITH_COUNTS} classes; see the JSON."
    return _section("Confusion matrices", f'<div class="pair">{"".join(figures)}</div>', anchor="confusion", note=note)


def _per_class(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    rows = []
    for i, row in enumerate(report.get("per_class") or []):
        drop = row.get("drop_pp") or 0.0
        cls = "bad" if drop > 0 else ("good" if drop < 0 else "")
        rows.append(
            f'<tr class="{cls}"><td>{_e(row.get("label"))}</td>{_num(report, f"per_class.{i}.support", "int")}'
            f"{_num(report, f'per_class.{i}.reference_accuracy', 'percent')}"
            f"{_num(report, f'per_class.{i}.candidate_accuracy', 'percent')}"
            f"{_num(report, f'per_class.{i}.drop_pp', 'pp', cls='num drop')}</tr>"
        )
    drops = report.get("largest_drops") or []
    worst = ", ".join(f"{_e(d.get('label'))} ({_e(fmt_pp(d.get('drop_pp')))})" for d in drops) or "none"
    figure = _figure(charts["per_class.png"]) if "per_class.png" in charts else ""
    table = _table(["Class", "Images", "Reference", "Candidate", "Drop"], rows, cls="narrow", numeric=(1, 2, 3, 4))
    note = f"Largest drops: {worst}. Drop is reference minus candidate accuracy; red rows got worse."
    return _section("Per-class accuracy", figure + table, anchor="per-class", note=note)


def _stage_data(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """``report["stages"]`` (``stages`` and ``comparisons`` lists), or an empty mapping."""
    data = report.get("stages")
    return data if isinstance(data, Mapping) else {}


def _stages(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    data = _stage_data(report)
    rows = [
        f"<tr><td>{_e(s.get('name'))}</td><td><code>{_e(s.get('model', ''))}</code></td>"
        f"{_num(report, f'stages.stages.{i}.accuracy', 'percent')}</tr>"
        for i, s in enumerate(data.get("stages") or [])
    ]
    columns = [("agreement", "percent"), ("accuracy_change_pp", "pp_change"), ("mae", "float")]
    columns += [("cosine", "float"), ("l2_relative", "float")]
    comparisons = [
        f"<tr><td>{_e(c.get('from'))} → {_e(c.get('to'))}</td>"
        + "".join(_num(report, f"stages.comparisons.{i}.{key}", kind) for key, kind in columns)
        + "</tr>"
        for i, c in enumerate(data.get("comparisons") or [])
    ]
    body = _figure(charts["stages.png"]) if "stages.png" in charts else ""
    body += _table(["Stage", "Model", "Accuracy"], rows, numeric=(2,))
    if comparisons:
        head = ["Step", "Agreement", "Accuracy change", "Mean abs. error", "Cosine", "Relative L2"]
        body += "<h3>Step by step: scores of one stage against the next</h3>" + _table(
            head, comparisons, numeric=(1, 2, 3, 4, 5)
        )
    note = "Where accuracy is lost: each conversion stage run on the same images, and each stage against the next."
    return _section("Conversion stages", body, anchor="stages", note=note)


def _layers(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    rows = []
    for i, layer in enumerate(report.get("layers") or []):
        span = layer.get("range")
        low_high = (
            f'[<span data-json="layers.{i}.range.0" data-kind="float">{_e(fmt_float(span[0]))}</span>, '
            f'<span data-json="layers.{i}.range.1" data-kind="float">{_e(fmt_float(span[1]))}</span>]'
            if isinstance(span, Sequence) and len(span) == 2
            else MISSING
        )
        flag = ' <span class="fail-text">outlier range</span>' if layer.get("outlier") else ""
        rows.append(
            f"<tr><td>{i + 1}</td><td><code>{_e(layer.get('name'))}</code>{flag}</td><td>{_e(layer.get('op', ''))}</td>"
            f"{_num(report, f'layers.{i}.rmse_scale', 'float')}{_num(report, f'layers.{i}.relative_error', 'float')}"
            f"{_num(report, f'layers.{i}.channel_range_ratio', 'float')}{_num(report, f'layers.{i}.scale', 'float')}"
            f'{_num(report, f"layers.{i}.zero_point", "int")}<td class="num">{low_high}</td></tr>'
        )
    body = _figure(charts["layers.png"]) if "layers.png" in charts else ""
    head = ["#", "Layer", "Op", "RMSE / scale", "Relative error", "Channel range", "Scale", "Zero point", "Range"]
    body += _table(head, rows, numeric=(3, 4, 5, 6, 7, 8))
    note = (
        "RMSE of each int8 layer output against the float one, in quantization steps (the layer's scale). "
        f"Rounding alone gives 1/√12 ≈ {ROUNDING_RMSE:.3f}; much more means error built up or a badly chosen range. "
        "Relative error is the RMSE over the spread of the float output; channel range is the largest channel's "
        "peak over the median channel's: when one channel sets the range, the others get too few int8 steps."
    )
    return _section("Per-layer quantization error", body, anchor="layers", note=note)


def _resources(report: Mapping[str, Any]) -> str:
    rows = []
    for key, title, kind in (("sizes", "Model size", "bytes"), ("latency_ms", "Latency (p50)", "ms")):
        data = report.get(key)
        if not isinstance(data, Mapping):
            continue
        ref, cand = data.get("reference"), data.get("candidate")
        ratio = (
            fmt_ratio(cand / ref) if isinstance(ref, (int, float)) and isinstance(cand, (int, float)) and ref else ""
        )
        rows.append(
            f"<tr><td>{title}</td>{_num(report, f'{key}.reference', kind)}{_num(report, f'{key}.candidate', kind)}"
            f'<td class="num">{_e(ratio or MISSING)}</td></tr>'
        )
    table = _table(["", "Reference", "Candidate", "Candidate / reference"], rows, cls="narrow", numeric=(1, 2, 3))
    return _section("Size and latency", table, anchor="resources")


def _skipped(report: Mapping[str, Any]) -> str:
    skipped = list(report.get("skipped") or [])
    if not skipped:
        return _section(
            "Skipped files", '<p class="note">None: every file was an image that could be read.</p>', anchor="skipped"
        )
    rows = [
        f"<tr><td><code>{_e(s.get('path'))}</code></td><td>{_e(s.get('reason'))}</td></tr>"
        for s in skipped[:MAX_SKIPPED_ROWS]
    ]
    more = len(skipped) - MAX_SKIPPED_ROWS
    tail = f'<p class="note">… and {more} more (see the JSON).</p>' if more > 0 else ""
    return _section("Skipped files", _table(["File", "Reason"], rows) + tail, anchor="skipped")


def _css() -> str:
    ref, cand, ok, bad = map(_hex, (REFERENCE_COLOR, CANDIDATE_COLOR, PASS_COLOR, FAIL_COLOR))
    return f"""
:root{{--ref:{ref};--cand:{cand};--pass:{ok};--fail:{bad};--ink:#1f2328;--muted:#5f6872;--line:#d8dee4}}
*{{box-sizing:border-box}}
body{{margin:0;color:var(--ink);background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans","Helvetica Neue",Arial,sans-serif}}
.wrap{{max-width:1180px;margin:0 auto;padding:0 32px}}
header.verdict{{color:#fff;padding:26px 0 22px}}
header.pass{{background:var(--pass)}} header.fail{{background:var(--fail)}}
header .kicker{{font-size:14px;letter-spacing:.06em;text-transform:uppercase;opacity:.9}}
header .word{{font-size:56px;font-weight:800;line-height:1.1;letter-spacing:.02em;margin:4px 0}}
header .detail{{font-size:16px;opacity:.95}}
main{{padding:8px 0 40px}}
h2{{font-size:22px;margin:36px 0 8px;padding-bottom:6px;border-bottom:1px solid var(--line)}}
h3{{font-size:16px;margin:22px 0 8px}}
.note{{color:var(--muted);margin:4px 0 12px;max-width:80ch}}
.cards{{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-top:24px}}
.card{{border:1px solid var(--line);border-radius:10px;padding:12px 16px;border-top:4px solid var(--line)}}
.card.ref{{border-top-color:var(--ref)}} .card.cand{{border-top-color:var(--cand)}}
.card .label{{font-size:13px;color:var(--muted)}}
.card .value{{font-size:26px;font-weight:700;font-variant-numeric:tabular-nums;white-space:nowrap}}
table{{border-collapse:collapse;width:100%;margin:8px 0 4px;font-variant-numeric:tabular-nums}}
table.narrow{{width:auto;min-width:560px}}
th,td{{padding:6px 12px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}}
th{{font-size:13px;color:var(--muted);font-weight:600;background:#f6f8fa}}
td.num,th.num{{text-align:right;white-space:nowrap}}
tr.bad td.drop{{color:var(--fail);font-weight:600}} tr.good td.drop{{color:var(--pass)}}
tr.bad code{{color:var(--fail)}}
.fail-text{{color:var(--fail);font-weight:600;font-size:13px}}
code{{font:13px ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;word-break:break-all}}
.pill{{display:inline-block;min-width:52px;text-align:center;padding:1px 10px;border-radius:999px;color:#fff;
font-weight:700;font-size:13px}}
.pill.pass{{background:var(--pass)}} .pill.fail{{background:var(--fail)}}
.pair{{display:grid;grid-template-columns:1fr 1fr;gap:24px;align-items:start}}
figure{{margin:8px 0 16px}} figure img{{max-width:100%;height:auto;display:block}}
footer{{color:var(--muted);font-size:13px;padding-bottom:32px}}
footer p{{border-top:1px solid var(--line);padding-top:12px;margin:0}}
@media (max-width:900px){{.cards{{grid-template-columns:repeat(3,1fr)}} .pair{{grid-template-columns:1fr}}}}
@media print{{header.verdict{{-webkit-print-color-adjust:exact;print-color-adjust:exact}}}}
"""


def render_html(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    """The self-contained page of :func:`write_report`, with ``charts`` (from :func:`render_charts`) inline."""
    verdict = "PASSED" if report.get("passed") else "FAILED"
    sections = [_headline(report), _gates(report), _confusion(report, charts), _per_class(report, charts)]
    if _stage_data(report).get("stages") or _stage_data(report).get("comparisons"):
        sections.append(_stages(report, charts))
    if report.get("layers"):
        sections.append(_layers(report, charts))
    if report.get("sizes") or report.get("latency_ms"):
        sections.append(_resources(report))
    sections.append(_skipped(report))
    footer = (
        f"Generated by edgecnn {_e(__version__)} from the same data as <code>edgecnn validate --json</code>. "
        "Accuracies are top-1 on the images listed; agreement is the share of images where both models "
        "predict the same class."
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>edgecnn validate: {verdict}</title><style>{_css()}</style></head><body>"
        f'{_header(report)}<main class="wrap">{"".join(sections)}</main>'
        f'<footer class="wrap"><p>{footer}</p></footer></body></html>\n'
    )
