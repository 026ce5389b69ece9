"""Reading a written report.html back: the numbers it shows with their JSON paths, and how each must look."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from edgecnn.evidence.report import fmt_bytes, fmt_float, fmt_int, fmt_ms, fmt_percent, fmt_pp


class _Page(HTMLParser):
    """Collects the numbers tagged with their JSON path, the text, and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.numbers: dict[str, str] = {}
        self.urls: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self._open: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        self.urls += [(tag, k, v) for k, v in values.items() if k in ("src", "href", "action", "srcset", "poster")]
        if "data-json" in values:
            self._open.append((tag, values["data-json"], []))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, path, parts = self._open.pop()
            assert path not in self.numbers, f"{path} shown twice"
            self.numbers[path] = "".join(parts)


def parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def resolve(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def expected_formatter(report: dict[str, Any], path: str) -> Callable[[Any], str]:
    """How the page must show the number at ``path``: decided here, independently of the page's tags."""
    gate = re.fullmatch(r"gates\.(\d+)\.(value|threshold)", path)
    if gate:
        return {"max-drop": fmt_pp, "min-agreement": fmt_percent, "min-reference-accuracy": fmt_percent}[
            report["gates"][int(gate[1])]["name"]
        ]
    rules: list[tuple[str, Callable[[Any], str]]] = [
        (r"reference_accuracy|candidate_accuracy|agreement", fmt_percent),
        (r"accuracy_drop_pp", fmt_pp),
        (r"num_images|num_skipped", fmt_int),
        (r"per_class\.\d+\.support", fmt_int),
        (r"per_class\.\d+\.(reference|candidate)_accuracy", fmt_percent),
        (r"per_class\.\d+\.drop_pp", fmt_pp),
        (r"stages\.stages\.\d+\.accuracy", fmt_percent),
        (r"stages\.comparisons\.\d+\.agreement", fmt_percent),
        (r"stages\.comparisons\.\d+\.accuracy_change_pp", lambda v: fmt_pp(v, signed=True)),
        (r"stages\.comparisons\.\d+\.(mae|cosine|l2_relative)", fmt_float),
        (r"layers\.\d+\.(rmse_scale|relative_error|channel_range_ratio|scale|range\.[01])", fmt_float),
        (r"layers\.\d+\.zero_point", fmt_int),
        (r"sizes\.(reference|candidate)", fmt_bytes),
        (r"latency_ms\.(reference|candidate)", fmt_ms),
    ]
    for pattern, formatter in rules:
        if re.fullmatch(pattern, path):
            return formatter
    raise AssertionError(f"the page shows {path}, which this test does not know")
