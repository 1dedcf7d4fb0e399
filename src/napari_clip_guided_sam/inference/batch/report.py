"""The batch report: one row per file, rewritten atomically as CSV and JSON after each file,
so an interrupted run still says what it finished."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..._atomic import atomic_write

__all__ = ["REPORT_NAME", "BatchReport"]

REPORT_NAME = "segment_report"  # .csv and .json in the output folder


class BatchReport:
    """Rows of the batch report, rewritten atomically as CSV and JSON after each file."""

    COLUMNS = ("input", "status", "output", "slices", "seconds", "reason")

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.csv_path = folder / f"{REPORT_NAME}.csv"
        self.json_path = folder / f"{REPORT_NAME}.json"
        self.settings = settings
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
                "input": str(path),
                "status": status,
                "output": str(output) if output else "",
                "slices": slices,
                "seconds": round(seconds, 3),
                "reason": reason,
            }
        )

    def write(self, stopped: str | None = None) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        counts = {s: sum(r["status"] == s for r in self.rows) for s in ("done", "failed")}
        counts["skipped"] = len(self.rows) - counts["done"] - counts["failed"]
        document = {
            "settings": self.settings,
            "summary": {**counts, "stopped": stopped},
            "files": self.rows,
        }
        atomic_write(self.csv_path, lambda t: t.write_text(text.getvalue(), encoding="utf-8"))
        atomic_write(
            self.json_path,
            lambda t: t.write_text(
                json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8"
            ),
        )
