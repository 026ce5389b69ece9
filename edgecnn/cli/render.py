"""Text rendering of results for people; JSON rendering is each result's ``to_dict``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgecnn.runtime.files import dumps_json
from edgecnn.units import fmt_ms, fmt_percent

if TYPE_CHECKING:
    from edgecnn.build.convert import ConversionResult
    from edgecnn.build.train import TrainResult
    from edgecnn.evidence.validate import ValidationReport
    from edgecnn.runtime.classify import ClassifyResult
    from edgecnn.runtime.data import Skipped
    from edgecnn.targets import TargetList

percent = fmt_percent


def as_json(result: Any) -> str:
    """A result as one canonical JSON document (sorted keys, two-space indent, a final newline)."""
    return dumps_json(result.to_dict() if hasattr(result, "to_dict") else result)


def shown(path: object) -> str:
    """A path (or a name from the user's folder) for people's text: control characters such as a newline or an
    escape are written as Python escapes (``\\n``, ``\\x1b``), so a file name cannot fake a result line or drive
    the terminal. Printable names, accented ones included, are unchanged; JSON keeps the real name."""
    text = str(path)
    return text if text.isprintable() else "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def skipped_lines(skipped: Sequence[Skipped], *, show: int = 5) -> list[str]:
    """A count of skipped files and the first few with their reasons."""
    if not skipped:
        return []
    lines = [f"skipped {len(skipped)} file(s):"]
    lines += [f"  {shown(s.path)}: {shown(s.reason)}" for s in skipped[:show]]
    if len(skipped) > show:
        lines.append(f"  ... and {len(skipped) - show} more (see --json)")
    return lines


def trained_in_step(result: TrainResult) -> str:
    """Summary of ``edgecnn train --strategy multi-worker`` on a worker other than the chief: trained, wrote nothing."""
    accuracy = result.metrics.get("accuracy", 0.0)
    return f"trained in step with the chief, which writes the model (final accuracy {accuracy:.1%}); nothing written"


def training(result: TrainResult) -> str:
    """Summary of ``edgecnn train``."""
    m = result.metrics
    lines = [
        f"wrote {result.path} ({len(result.info.labels)} classes, {result.num_train} training images, "
        f"{result.num_validation} validation images)",
        f"final accuracy {percent(m.get('accuracy', 0.0))}"
        + (f", validation accuracy {percent(m['val_accuracy'])}" if "val_accuracy" in m else ""),
    ]
    return "\n".join(lines + skipped_lines(result.skipped))


def quant_line(name: str, params: Any) -> str:
    """``input int8 (scale 0.003922, zero point -128)``."""
    if params.quantized:
        return f"{name} {params.dtype} (scale {params.scale:.6g}, zero point {params.zero_point})"
    return f"{name} {params.dtype}"


def conversion(result: ConversionResult) -> str:
    """Summary of ``edgecnn convert``."""
    ops = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in result.ops.items())
    lines = [
        f"wrote {result.path} and {result.path.with_suffix('.json').name}",
        f"quantization {result.info.quantization}: {result.size_bytes:,} bytes "
        f"(float {result.float_size_bytes:,} bytes, {result.size_bytes / result.float_size_bytes:.2f}x)",
        f"{quant_line('input', result.info.input)}; {quant_line('output', result.info.output)}",
        f"ops: {ops}",
    ]
    calibration = result.info.extra.get("calibration")
    if calibration:
        lines.append(f"calibration: {calibration['num_images']} images (fingerprint {calibration['fingerprint'][:12]})")
    source = result.info.extra.get("source") or {}
    if "described_by" in source:  # a model from elsewhere: say where its labels and preprocessing came from
        lines.append(
            f"source: {source['model']} ({source['format']}, sha256 {source['sha256'][:12]}); labels and "
            f"preprocessing from {' and '.join(source['described_by']) or 'nothing'}"
        )
    return "\n".join(lines + skipped_lines(result.skipped))


_MAX_MATRIX_CLASSES = 20


def _matrix(title: str, labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    """A confusion matrix with numbered columns, so it stays narrow whatever the label lengths."""
    if len(labels) > _MAX_MATRIX_CLASSES:
        return [f"{title}: {len(labels)} classes, see --json"]
    width = max(4, len(str(len(labels) - 1)) + 1, max(len(str(v)) for row in matrix for v in row) + 1)
    name_width = min(16, max(len(l) for l in labels))
    head = " " * (name_width + 4) + "".join(f"{i:>{width}}" for i in range(len(labels)))
    rows = [
        f"{i:>2} {label[:name_width]:<{name_width}} " + "".join(f"{v:>{width}}" for v in row)
        for i, (label, row) in enumerate(zip(labels, matrix))
    ]
    return [f"{title} (rows: true class, columns: predicted class number)", head, *rows]


def validation(result: Any) -> str:
    """The full validation report: figures, per-class table, confusion matrices, gates."""
    report: ValidationReport = getattr(result, "report", result)
    lines = [
        f"images: {report.num_images} (skipped {len(report.skipped)})",
        f"top-1 accuracy: reference {percent(report.reference_accuracy)}, "
        f"candidate {percent(report.candidate_accuracy)}, drop {report.accuracy_drop_pp:.2f} pp",
        f"top-1 agreement: {percent(report.agreement)}",
        f"candidate ran on: {report.candidate_target} ({report.candidate_runtime or 'keras'})",
        "",
        f"{'class':<16}{'images':>8}{'reference':>11}{'candidate':>11}{'drop pp':>9}",
    ]
    lines += [
        f"{shown(c.label)[:15]:<16}{c.support:>8}{percent(c.reference_accuracy):>11}{percent(c.candidate_accuracy):>11}"
        f"{c.drop_pp:>9.2f}"
        for c in report.per_class
    ]
    drops = report.largest_drops()
    lines.append(
        "largest per-class drops: "
        + (", ".join(f"{shown(c.label)} {c.drop_pp:.2f} pp" for c in drops) if drops else "none")
    )
    labels = [shown(label) for label in report.labels]
    lines += ["", *_matrix("reference confusion", labels, report.reference_confusion)]
    lines += ["", *_matrix("candidate confusion", labels, report.candidate_confusion), ""]
    if report.stages is not None:
        lines += [*stage_table(report.stages), ""]
    lines += skipped_lines(report.skipped)
    lines += [f"{'PASS' if g.passed else 'FAIL'} {g.describe()}" for g in report.gates]
    if report.untested_labels:
        lines.append(report.untested_note())
    lines.append("validation passed" if report.passed else "validation FAILED")
    return "\n".join(lines)


def predictions(result: ClassifyResult) -> str:
    """One line per image: the top classes with their probabilities."""
    lines = [
        f"{shown(p.path)}: " + ", ".join(f"{shown(label)} {score:.3f}" for label, score in p.top)
        for p in result.predictions
    ]
    return "\n".join(lines + skipped_lines(result.skipped))


def demo(result: Any) -> str:
    """Summary of ``edgecnn demo`` with the paths it wrote."""
    r = result.report
    c = result.conversion
    lines = [
        f"data:        {result.train_dir} (train), {result.test_dir} (held out)",
        f"float model: {result.training.path}",
        f"int8 model:  {c.path} ({c.size_bytes:,} bytes, float {c.float_size_bytes:,}) "
        f"+ {c.path.with_suffix('.json').name}",
        f"validation on {r.num_images} held-out images: float {percent(r.reference_accuracy)}, "
        f"int8 {percent(r.candidate_accuracy)}, drop {r.accuracy_drop_pp:.2f} pp, agreement {percent(r.agreement)}",
        *[f"{'PASS' if g.passed else 'FAIL'} {g.describe()}" for g in r.gates],
        "sample predictions (int8):",
        *[
            f"  {p.path.parent.name}/{p.path.name} (true {p.path.parent.name}): {p.top[0][0]} {p.top[0][1]:.3f}"
            for p in result.predictions
        ],
        f"done in {result.seconds:.1f} s",
    ]
    return "\n".join(lines)


def target_table(statuses: TargetList) -> str:
    """``edgecnn targets``: one block per target."""
    lines = []
    for status in statuses:
        lines.append(f"{status.name:<8}{'usable' if status.usable else 'NOT USABLE':<12}{status.summary}")
        lines.append(f"{'':<20}{status.detail}")
        if status.fix:
            lines.append(f"{'':<20}fix: {status.fix}")
    return "\n".join(lines)


def check_report(report: Any) -> str:
    """``edgecnn check``: each finding, then the verdict."""
    lines = [f"{report.model} on {report.target}:"]
    lines += [f"  {f.severity.upper():<8}{f.code}: {f.message}" for f in report.findings]
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = sum(f.severity == "warning" for f in report.findings)
    verdict = "can run" if report.passed else "CANNOT run"
    lines.append(f"{verdict} on {report.target} ({errors} error(s), {warnings} warning(s))")
    return "\n".join(lines)


def bench_result(result: Any) -> str:
    """``edgecnn bench``: the latency distribution and the throughput."""
    ms = result.latency_ms
    machine = result.machine
    where = machine.get("board") or f"{machine.get('arch', '?')} {machine.get('system', '')}".strip()
    threads = "runtime default" if result.threads is None else str(result.threads)
    lines = [
        f"{result.model} on {result.target} ({where}, {machine.get('cpus', '?')} CPUs), {result.runtime}, "
        f"threads {threads}, batch {result.batch}, inputs {result.inputs}",
        f"init {result.init_ms:.2f} ms; {result.warmup} warm-up runs, {result.runs} timed runs",
        f"latency ms: min {_ms(ms['min'])}  p50 {_ms(ms['p50'])}  p90 {_ms(ms['p90'])}  max {_ms(ms['max'])}  "
        f"mean {_ms(ms['mean'])} (std {_ms(ms['std'])})",
        f"throughput: {result.throughput:.1f} images/s",
    ]
    # A model without a sidecar: each input tensor and the range its random values came from.
    for t in result.input_tensors:
        span = f"[{t['low']:g}, {t['high']:g})" if t["dtype"].startswith("float") else f"{t['low']:g}..{t['high']:g}"
        values = f"{span} ({t['source']})" if "low" in t else t["source"]
        name = str(t["name"]) if str(t["name"]).isprintable() else ascii(str(t["name"]))[1:-1]  # names from the file
        lines.append(f"input {name} {t['dtype']} {t['shape']}: {values}")
    if result.instructions is not None:
        lines += instruction_lines(result.instructions)
    return "\n".join(lines + skipped_lines(result.skipped))


def instruction_lines(instructions: dict[str, Any]) -> list[str]:
    """An emulated board's instructions per inference, by kernel set, and their ratio."""
    lines = ["instructions per inference (qemu):"]
    for kernels, counts in instructions["per_inference"].items():
        firmware = counts["firmware"]
        lines.append(
            f"  {kernels:<10} p50 {counts['p50']:>13,}  min {counts['min']:>13,}  max {counts['max']:>13,}  "
            f"(firmware: flash {firmware['flash_bytes']:,} bytes, RAM {firmware['ram_bytes']:,})"
        )
    ratio = instructions["reference_over_cmsis_nn"]
    if ratio is not None:
        lines.append(f"  reference / cmsis-nn: {ratio:.2f}x the instructions")
    lines.append(f"note: {instructions['note']}")
    return lines


def _ms(value: float | None) -> str:
    """A latency in ms, or ``n/a`` for a statistic the timing tool does not report."""
    return "n/a" if value is None else fmt_ms(value).removesuffix(" ms")


def stage_table(stages: Any) -> list[str]:
    """The stage chain: each stage's accuracy, then what changed between consecutive stages."""
    lines = ["stages (same images, here):"]
    lines += [f"  {s.name:<34}{percent(s.accuracy):>9}  {s.model}" for s in stages.stages]
    lines.append(f"  {'from → to':<58}{'agree':>8}{'acc pp':>8}{'MAE':>11}{'cosine':>10}{'L2 rel':>10}")
    lines += [
        f"  {c.source + ' → ' + c.target:<58}{percent(c.agreement):>8}{c.accuracy_change_pp:>8.2f}"
        f"{c.mae:>11.3g}{c.cosine:>10.6f}{c.l2_relative:>10.3g}"
        for c in stages.comparisons
    ]
    return lines


def diagnosis(result: Any) -> str:
    """``edgecnn diagnose``: findings first, then the layer table, worst first."""
    lines = [f"{result.model}: {len(result.causes)} finding(s)"]
    lines += [f"  {c.severity.upper():<8}{c.code}: {c.message}" for c in result.causes] or ["  none"]
    lines += [
        "",
        f"{'layer':<44}{'op':<16}{'rel err':>9}{'rmse/step':>10}{'ch range':>10}{'scale':>11}{'zp':>6}",
    ]
    lines += [
        f"{l.name[:43]:<44}{l.op:<16}{l.relative_error:>9.3f}{l.rmse_scale:>10.3f}{l.channel_range_ratio:>10.1f}"
        f"{l.scale:>11.4g}{l.zero_point:>6}"
        for l in result.layers
    ]
    cal = result.calibration
    lines.append(f"calibration: {cal.get('num_images')} images, per class {cal.get('per_group')}")
    return "\n".join(lines + skipped_lines(result.skipped))


def finetuning(result: ConversionResult) -> str:
    """``edgecnn finetune``: what fine-tuning reached, then the conversion summary."""
    qat = result.info.extra["qat"]
    metrics = qat["metrics"]
    line = (
        f"fine-tuned {qat['epochs']} epoch(s) with simulated int8 on {qat['num_train']} images: "
        f"accuracy {percent(metrics.get('accuracy', 0.0))}"
    )
    if "val_accuracy" in metrics:
        line += f", validation accuracy {percent(metrics['val_accuracy'])} ({qat['num_validation']} images)"
    return f"{line}\n{conversion(result)}"


def recovery(result: Any) -> str:
    """``edgecnn convert --max-drop``: every attempt, then what was written."""
    lines = [f"{'attempt':<22}{'accuracy':>10}{'drop pp':>9}{'bytes':>10}  {'runs on':<24}detail"]
    for a in result.attempts:
        runs = ", ".join(name for name, ok in a.targets.items() if ok)
        lines.append(
            f"{a.name:<22}{percent(a.accuracy):>10}{a.drop_pp:>9.2f}{a.size_bytes:>10,}  {runs:<24}{a.detail}"
            f"{'  PASS' if a.passed else ''}"
        )
    chosen = result.chosen
    lines.append(
        f"float (Keras) accuracy: {percent(chosen.reference_accuracy)}; gate: drop at most {result.max_drop:.2f} pp"
    )
    verb = "wrote" if result.passed else "no attempt passed; wrote the best attempt"
    lines.append(f"{verb} {result.conversion.path} ({chosen.name}: {chosen.detail})")
    return "\n".join(lines + skipped_lines(result.skipped))


def target_conversion(result: Any) -> str:
    """``edgecnn convert [--target NAME]``: the conversion (or recovery), then what the target built.

    The target's warnings and errors go to stderr, one line each, so only its informational lines are here.
    """
    from edgecnn.build.recover import RecoveryResult

    converted = result.conversion
    text = recovery(converted) if isinstance(converted, RecoveryResult) else conversion(converted)
    build = result.build
    if build is None:
        return text
    lines = [text, f"target {build.target}: deploy {build.model}"]
    lines += [f"  {f.code}: {f.message}" for f in build.findings if f.severity == "info" and f.code != "op"]
    lines += [f"  wrote {path}" for path in build.files]
    return "\n".join(lines)


def micro_export(result: Any) -> str:
    """``edgecnn export micro``: the files written, the model's flash and arena, and the budget if any."""
    arena = result.arena
    lines = [f"wrote {path}" for path in result.files]
    lines.append(
        f"model {result.model_bytes:,} bytes of flash; tensor arena {arena.arena_bytes:,} bytes "
        f"({arena.used_bytes:,} measured + {arena.margin_bytes:,} margin)"
    )
    lines.append(f"operations ({len(result.ops)}): {', '.join(result.ops)}")
    budget = result.budget
    if budget is not None:

        def verdict(ok: bool) -> str:
            return "fits" if ok else "DOES NOT FIT"

        lines.append(
            f"{budget['board']} ({budget['title']}): flash {budget['model_bytes']:,} of {budget['flash_bytes']:,} "
            f"bytes ({verdict(budget['flash_fits'])}); RAM arena {budget['arena_bytes']:,} of "
            f"{budget['ram_bytes']:,} bytes ({verdict(budget['ram_fits'])})"
        )
    return "\n".join(lines)


def inspection(result: Any) -> str:
    """``edgecnn inspect``: the file, its inputs and outputs, operators, weights and MACs, then its metadata."""
    from edgecnn.units import fmt_bytes, fmt_int

    def table(rows: list[list[str]], right: tuple[int, ...] = ()) -> list[str]:
        """Rows as aligned columns (those in ``right`` aligned right), indented under their section title."""
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return [
            "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in rows
        ]

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    def safe(text: str) -> str:
        """A string from the file, with control characters escaped: a name must not move the cursor or recolour
        the terminal, nor break a table row."""
        return text if text.isprintable() else ascii(text)[1:-1]

    def shape(t: Any) -> str:
        text = f"[{', '.join(map(str, t.shape))}]"
        return f"{text} (signature [{', '.join(map(str, t.signature))}])" if t.dynamic else text

    def quantization(q: Any) -> str:
        if q is None:
            return "none"
        if q.per_channel:
            return f"per-channel: {q.scales} scales, axis {q.axis}"
        return f"scale {q.scale:.6g}, zero point {q.zero_point}"

    def value(key: str, v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {value(k, x)}" for k, x in v.items())
        if isinstance(v, (list, tuple)):
            shown = ", ".join(value(key, x) for x in v[:10]) + (f", … (+{len(v) - 10} more)" if len(v) > 10 else "")
            return f"{len(v)}: {shown}" if key == "labels" else shown
        return f"{v:g}" if isinstance(v, float) else safe(str(v))

    subgraphs = plural(result.subgraphs, "subgraph") + ("" if result.subgraphs == 1 else " (figures are subgraph 0's)")
    about = [
        ["size", fmt_bytes(result.size_bytes)],
        ["sha256", result.sha256],
        ["description", safe(result.description) or "none"],
        ["schema", f"version {result.schema_version}, {subgraphs}"],
    ]
    if result.sidecar is not None:
        about.append(["sidecar", f"{result.sidecar} (edgecnn bundle)"])
    lines = [f"model {result.path}", *table(about)]

    for title, tensors, is_input in (("inputs", result.inputs, True), ("outputs", result.outputs, False)):
        rows = [["#", "name", "shape", "dtype", "quantization"] + (["layout"] if is_input else [])]
        for i, t in enumerate(tensors):
            row = [str(i), safe(t.name), shape(t), t.dtype, quantization(t.quantization)]
            rows.append([*row, t.layout or ""] if is_input else row)
        lines += ["", f"{title} ({len(tensors)})", *table(rows, right=(0,))]

    kinds = result.operators
    rows = [["operator", "count", "versions", "MACs", ""]]
    for k in kinds:
        versions = ", ".join(f"v{v}" for v in k.versions)
        macs = fmt_int(k.macs) if k.macs else ""
        rows.append([safe(k.name), str(k.count), versions, macs, "custom" if k.custom else ""])
    lines += ["", f"operators ({plural(len(kinds), 'kind')}, {result.operator_count} in all)"]
    lines += table(rows, right=(1, 3))

    p = result.parameters
    dtypes = ", ".join(f"{dtype} {fmt_int(n)}" for dtype, n in p.dtypes.items())
    per_channel = f"; {p.per_channel} per-channel" if p.per_channel else ""
    weights = f"{fmt_int(p.values)} values in {plural(p.tensors, 'tensor')} ({dtypes}{per_channel})"
    summary = [
        ["parameters", f"{weights}, {fmt_bytes(p.bytes)}" if p.tensors else "none"],
        ["MACs", f"{fmt_int(result.macs)} per inference"],
        ["layout", f"{result.layout} (first 4-D input, guessed)" if result.layout else "no 4-D input"],
    ]
    lines += ["", "summary", *table(summary)]

    if result.metadata_error:
        lines += ["", f"metadata: unreadable ({safe(result.metadata_error)})"]
    elif result.metadata:
        rows = [[key, value(key, v)] for key, v in result.metadata.items() if v not in (None, "", [], {})]
        lines += ["", "metadata (TFLite Metadata)", *(table(rows) if rows else ["  empty"])]
    else:
        lines += ["", "metadata: none"]
    return "\n".join(line.rstrip() for line in lines)
