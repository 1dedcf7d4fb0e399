"""The batch report: one row per file, rewritten atomically as CSV and JSON after each file,
so an interrupted run still says what it finished.

Every path and message is stored through :func:`~...data.formats.printable`, so a file name
that is not valid UTF-8 is written escaped (``\\xNN``) instead of breaking the report. The
JSON holds the run's settings and the model that made the labels (its provenance: preset,
adapter state, checkpoint, classes, base weights); each CSV row names the model in short.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write
from ...data.formats import printable

__all__ = ["REPORT_NAME", "BatchReport", "describe_model"]

REPORT_NAME = "segment_report"  # .csv and .json in the output folder


def describe_model(provenance: Mapping[str, Any]) -> str:
    """A model's provenance in one line, e.g. ``tiny; fine-tuned adapters; run1/best...``."""
    checkpoint = provenance.get("checkpoint")
    parts = [
        f"preset {provenance.get('preset')}",
        str(provenance.get("adapters")),
        f"checkpoint {checkpoint}" if checkpoint else "no checkpoint",
    ]
    return printable("; ".join(parts))


def _printable_values(value: Any) -> Any:
    """`value` with every string (at any depth) made printable."""
    if isinstance(value, str | Path):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable(str(k)): _printable_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_values(v) for v in value]
    return value


class BatchReport:
    """Rows of the batch report, rewritten atomically as CSV and JSON after each file."""

    COLUMNS = ("input", "status", "output", "slices", "seconds", "reason", "model")

    def __init__(
        self,
        folder: Path,
        settings: dict[str, Any],
        provenance: Mapping[str, Any] | None = None,
    ):
        self.folder = Path(folder)
        self.csv_path = self.folder / f"{REPORT_NAME}.csv"
        self.json_path = self.folder / f"{REPORT_NAME}.json"
        self.settings = _printable_values(settings)
        self.provenance = _printable_values(dict(provenance or {}))
        self._model = describe_model(provenance) if provenance else ""
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        path: Path,
        status: str,
        output: Path | None = None,
        slices: int = 0,
        seconds: float = 0.0,
        reason: str = "",
    ) -> None:
        self.rows.append(
            {
                "input": printable(path),
                "status": status,
                "output": printable(output) if output else "",
                "slices": slices,
                "seconds": round(seconds, 3),
                "reason": printable(reason),
                "model": self._model if status == "done" else "",
            }
        )

    def csv_text(self) -> str:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        return text.getvalue()

    def write(self, stopped: str | None = None) -> None:
        counts = {s: sum(r["status"] == s for r in self.rows) for s in ("done", "failed")}
        counts["skipped"] = len(self.rows) - counts["done"] - counts["failed"]
        document = {
            "settings": self.settings,
            "model": self.provenance,
            "summary": {**counts, "stopped": printable(stopped) if stopped else None},
            "files": self.rows,
        }
        csv_text = self.csv_text()
        json_text = json.dumps(document, indent=2, ensure_ascii=False)
        atomic_write(self.csv_path, lambda t: t.write_text(csv_text, encoding="utf-8"))
        atomic_write(self.json_path, lambda t: t.write_text(json_text, encoding="utf-8"))
