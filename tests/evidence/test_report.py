"""The validate report: HTML and charts from a real validation, numbers equal to the JSON's, and JUnit XML."""

from __future__ import annotations

import base64
import copy
import html
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import copy_subset
from PIL import Image
from report_page import expected_formatter, parse, resolve

from edgecnn.errors import UsageError
from edgecnn.evidence.report import (
    CANDIDATE_COLOR,
    CHART_FILES,
    MISSING,
    REFERENCE_COLOR,
    describe_gate,
    fmt_bytes,
    fmt_float,
    fmt_int,
    fmt_ms,
    fmt_percent,
    fmt_pp,
    write_junit,
    write_report,
)
from edgecnn.evidence.validate import Gate
from edgecnn.workflows.validate import validate_models

EVIL = "<script>alert('x')</script> & \"quotes\""
DROP_RULE = "accuracy drop {value:.2f} pp, allowed at most {threshold:.2f} pp"
AGREEMENT_RULE = "top-1 agreement {value:.4f}, required at least {threshold:.4f}"


def with_extras(report: dict[str, Any], models: dict[str, Path]) -> dict[str, Any]:
    """The optional keys validate may add, with plausible values (sizes are the real files')."""
    ref, cand = report["reference_accuracy"], report["candidate_accuracy"]
    stages = [
        ("keras float", "model.keras", ref),
        ("tflite float", "float.tflite", ref),
        ("tflite int8", "int8.tflite", cand),
        ("tflite int8 (reference kernels)", "int8.tflite", cand),
    ]
    comparisons = [
        ("keras float", "tflite float", 1.0, 0.0, 1.234e-7, 0.9999999, 3.1e-7),
        ("tflite float", "tflite int8", report["agreement"], -report["accuracy_drop_pp"], 0.01234, 0.99341, 0.0812),
        ("tflite int8", "tflite int8 (reference kernels)", 0.995, 0.5, 0.0011, 0.99991, 0.00417),
    ]
    keys = ("from", "to", "agreement", "accuracy_change_pp", "mae", "cosine", "l2_relative")
    layers = [  # the keys of edgecnn.build.diagnose.LayerError.to_dict
        ("conv2d_3", "CONV_2D", 1.8234, 0.3412, 1.42, False, 0.04123, -128, [0.0, 10.51]),
        ("dense", "FULLY_CONNECTED", 1.1417, 0.2089, 1.0, False, 0.1023, 12, [-14.3, 11.8]),
        ("conv2d_2", "CONV_2D", 0.6071, 0.0112, 1.82, False, 0.02311, -128, [0.0, 5.893]),
        ("conv2d_1", "CONV_2D", 0.3102, 0.0076, 1208.8, True, 0.01998, -128, [0.0, 5.1]),
        ("softmax", "SOFTMAX", 0.2889, 0.0038, 1.0, False, 0.00390625, -128, [0.0, 1.0]),
    ]
    layer_keys = (
        "name",
        "op",
        "rmse_scale",
        "relative_error",
        "channel_range_ratio",
        "outlier",
        "scale",
        "zero_point",
        "range",
    )
    return {
        **report,
        "stages": {
            "stages": [{"name": n, "model": m, "accuracy": a} for n, m, a in stages],
            "comparisons": [dict(zip(keys, c)) for c in comparisons],
        },
        "layers": [dict(zip(layer_keys, v)) for v in layers],
        "sizes": {"reference": models["float"].stat().st_size, "candidate": models["int8"].stat().st_size},
        "latency_ms": {"reference": 0.4123, "candidate": 0.1871},
    }


@pytest.fixture(scope="module")
def validated(models: dict[str, Path], photos_test: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real float-vs-int8 validation on 10 test photos per class (and one non-image), as JSON."""
    data = copy_subset(photos_test, tmp_path_factory.mktemp("report_data"), per_class=10)
    (data / "three" / "notes.txt").write_text("not an image")
    report = validate_models(models["float"], models["int8"], data, max_drop=1.0, min_agreement=0.5)
    return report.to_dict()


@pytest.fixture(scope="module")
def full(validated: dict[str, Any], models: dict[str, Path]) -> dict[str, Any]:
    return with_extras(validated, models)


@pytest.fixture(scope="module")
def written(full: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder, written once for the read-only checks (a missing folder is created)."""
    return write_report(full, tmp_path_factory.mktemp("report") / "out" / "nested").parent


def test_formatters() -> None:
    assert fmt_percent(0.98765) == "98.77%"
    assert fmt_percent(1.0) == "100.00%"
    assert fmt_pp(1.2) == "1.20 pp"
    assert fmt_pp(-0.0001) == "0.00 pp"
    assert fmt_pp(0.5, signed=True) == "+0.50 pp"
    assert fmt_pp(-1.0, signed=True) == "-1.00 pp"
    assert fmt_pp(0.0, signed=True) == "0.00 pp"
    assert fmt_float(0.31) == "0.3100"
    assert fmt_float(1.2e-7) == "1.200e-07"
    assert fmt_float(-0.0) == "0.000"
    assert fmt_int(12345) == "12,345"
    assert fmt_bytes(96768) == "96,768 bytes (94.5 KiB)"
    assert fmt_ms(0.4567) == "0.457 ms"
    assert {fmt_percent(None), fmt_pp(None), fmt_float(None), fmt_int(None)} == {MISSING}


def test_report_files_and_charts(written: Path) -> None:
    names = {p.name for p in written.iterdir()}
    assert names == {"report.html", *CHART_FILES}, "no temporary files left behind either"
    for name in CHART_FILES:
        with Image.open(written / name) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 150, name
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert pixels.std() > 20, f"{name} is blank"
        assert (pixels.min(axis=2) < 100).mean() > 0.002, f"{name} has no dark ink (text, bars)"


def tinted(pixels: np.ndarray, color: tuple[int, int, int]) -> int:
    """Pixels on the line from white to ``color``, at 15-100% (the charts' shades of one colour)."""
    white = np.array([255.0, 255.0, 255.0])
    direction = np.array(color, dtype=np.float64) - white
    share = (pixels - white) @ direction / (direction @ direction)
    off_line = np.linalg.norm(pixels - (white + share[..., None] * direction), axis=-1)
    return int(((share > 0.15) & (share <= 1.01) & (off_line < 6)).sum())


def test_charts_use_one_colour_per_model(written: Path) -> None:
    def load(name: str) -> np.ndarray:
        return np.asarray(Image.open(written / name).convert("RGB"), dtype=np.float64)

    reference, candidate, bars = load("confusion_reference.png"), load("confusion_candidate.png"), load("per_class.png")
    assert reference.shape == candidate.shape, "the two matrices are drawn alike, to sit side by side"
    assert tinted(reference, REFERENCE_COLOR) > 5000 and tinted(reference, CANDIDATE_COLOR) < 500
    assert tinted(candidate, CANDIDATE_COLOR) > 5000 and tinted(candidate, REFERENCE_COLOR) < 500
    assert tinted(bars, REFERENCE_COLOR) > 1000 and tinted(bars, CANDIDATE_COLOR) > 1000


def test_page_is_self_contained_and_embeds_the_charts(written: Path) -> None:
    text = (written / "report.html").read_text(encoding="utf-8")
    page = parse(written / "report.html")
    assert "http://" not in text and "https://" not in text and "url(" not in text and "@import" not in text
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert page.urls and all(value.startswith("data:image/png;base64,") for _, _, value in page.urls), page.urls
    embedded = [base64.b64decode(value.split(",", 1)[1]) for _, _, value in page.urls]
    assert sorted(embedded) == sorted((written / name).read_bytes() for name in CHART_FILES)


def test_numbers_on_the_page_equal_the_json(written: Path, full: dict[str, Any]) -> None:
    shown = parse(written / "report.html").numbers
    for path, text in shown.items():
        assert text == expected_formatter(full, path)(resolve(full, path)), path
    required = {
        "reference_accuracy",
        "candidate_accuracy",
        "accuracy_drop_pp",
        "agreement",
        "num_images",
        "num_skipped",
    }
    required |= {f"gates.{i}.{key}" for i in range(len(full["gates"])) for key in ("value", "threshold")}
    per_class = ("support", "reference_accuracy", "candidate_accuracy", "drop_pp")
    required |= {f"per_class.{i}.{key}" for i in range(len(full["per_class"])) for key in per_class}
    required |= {f"stages.stages.{i}.accuracy" for i in range(4)}
    comparison = ("agreement", "accuracy_change_pp", "mae", "cosine", "l2_relative")
    required |= {f"stages.comparisons.{i}.{key}" for i in range(3) for key in comparison}
    layer = ("rmse_scale", "relative_error", "channel_range_ratio", "scale", "zero_point", "range.0", "range.1")
    required |= {f"layers.{i}.{key}" for i in range(len(full["layers"])) for key in layer}
    required |= {f"{group}.{role}" for group in ("sizes", "latency_ms") for role in ("reference", "candidate")}
    assert required <= set(shown), required - set(shown)
    # The formatters themselves, spelled out once on real numbers.
    assert shown["reference_accuracy"] == f"{100 * full['reference_accuracy']:.2f}%"
    assert shown["layers.0.rmse_scale"] == "1.823"


def test_page_names_verdict_gates_and_where_the_candidate_ran(written: Path, full: dict[str, Any]) -> None:
    text = " ".join(parse(written / "report.html").text)
    assert ("PASSED" if full["passed"] else "FAILED") in text
    for gate in full["gates"]:
        assert describe_gate(gate).split(": ", 1)[1] in text
    assert full["candidate_target"] in text and full["candidate_runtime"] in text
    assert all(row["label"] in text for row in full["per_class"])
    assert full["skipped"][0]["path"] in text and "not an image" in text


def test_user_text_is_escaped(full: dict[str, Any], tmp_path: Path) -> None:
    report = copy.deepcopy(full)
    report["labels"][0] = report["per_class"][0]["label"] = EVIL
    report["skipped"][0]["path"] = f"/data/{EVIL}.txt"
    report["stages"]["stages"][0]["name"] = EVIL
    report["layers"][0]["name"] = EVIL
    text = write_report(report, tmp_path).read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "alert('x')" not in text
    assert html.escape(EVIL) in text
    assert "script" not in parse(tmp_path / "report.html").tags


def test_optional_sections_follow_the_json(validated: dict[str, Any], full: dict[str, Any], tmp_path: Path) -> None:
    write_report(full, tmp_path)
    assert (tmp_path / "layers.png").exists() and (tmp_path / "stages.png").exists()
    text = write_report(validated, tmp_path).read_text(encoding="utf-8")
    assert not (tmp_path / "layers.png").exists() and not (tmp_path / "stages.png").exists(), "stale charts removed"
    for heading in ("Conversion stages", "Per-layer quantization error", "Size and latency"):
        assert heading not in text
    assert "Confusion matrices" in text and "Per-class accuracy" in text


def test_failed_verdict_and_unusable_folders(full: dict[str, Any], tmp_path: Path) -> None:
    report = failing(full)
    text = write_report(report, tmp_path / "r").read_text(encoding="utf-8")
    assert 'data-verdict="FAILED"' in text and "1 of 2 gate(s) failed: max-drop" in text
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_report(report, tmp_path / "file")
    (tmp_path / "d" / "report.html").mkdir(parents=True)
    with pytest.raises(UsageError, match="is a folder"):
        write_report(report, tmp_path / "d")


def failing(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with a failed max-drop gate and a passed min-agreement gate."""
    gates = [Gate("max-drop", 1.2345, 1.0, False, DROP_RULE), Gate("min-agreement", 0.9901, 0.98, True, AGREEMENT_RULE)]
    return {**report, "passed": False, "gates": [g.to_dict() for g in gates]}


def junit(report: dict[str, Any], path: Path) -> ET.Element:
    assert write_junit(report, path) == path
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.parse(path).getroot()


def test_junit_one_testcase_per_gate(full: dict[str, Any], tmp_path: Path) -> None:
    root = junit(failing(full), tmp_path / "gates.xml")
    suites = root.findall("testsuite")
    assert root.tag == "testsuites" and len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "edgecnn validate"
    counts = {key: suite.get(key) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "2", "failures": "1", "errors": "0", "skipped": "0"}
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("edgecnn.validate", "max-drop"),
        ("edgecnn.validate", "min-agreement"),
    ]
    failure = cases[0].find("failure")
    assert failure is not None and cases[1].find("failure") is None
    assert failure.get("message") == "max-drop: accuracy drop 1.23 pp, allowed at most 1.00 pp"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    for key in ("reference_accuracy", "candidate_accuracy", "agreement", "num_images"):
        assert properties[key] == str(full[key])


def test_junit_of_the_real_validation_and_without_gates(validated: dict[str, Any], tmp_path: Path) -> None:
    suite = junit(validated, tmp_path / "real.xml").find("testsuite")
    assert suite is not None
    failed = [g["name"] for g in validated["gates"] if not g["passed"]]
    assert suite.get("tests") == str(len(validated["gates"])) and suite.get("failures") == str(len(failed))
    assert [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None] == failed
    suite = junit({**validated, "gates": [], "passed": True}, tmp_path / "none.xml").find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["validation ran"] and cases[0].find("failure") is None
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")
    written = write_junit(validated, tmp_path / "missing" / "junit.xml")  # a missing folder is created
    assert written.is_file()
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        write_junit(validated, tmp_path / "file" / "junit.xml")


def test_report_module_needs_no_tensorflow_or_matplotlib() -> None:
    code = (
        "import sys, edgecnn.evidence.report; "
        "bad = {'tensorflow', 'matplotlib', 'keras'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
