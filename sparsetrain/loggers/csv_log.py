"""CSV (``logger=[jsonl,csv]``): ``<run dir>/metrics.csv``, one row per metrics event, one column per field.

The table is rewritten from metrics.jsonl at each epoch end and when the run finishes, so after a resume it
holds exactly what metrics.jsonl holds (no rows of the interrupted part).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..runs.files import atomic_write
from .base import STAMPS

FIRST_COLUMNS = ("event", "split", *STAMPS)


class CSVLog:
    def __init__(self, metrics_path: Path, csv_path: Path) -> None:
        self.metrics_path = Path(metrics_path)
        self.csv_path = Path(csv_path)

    def log(self, event: dict) -> None:
        if event["event"] == "train":  # an epoch ended
            self.write()

    def finish(self, summary: dict) -> None:
        self.write()

    def write(self) -> None:
        with self.metrics_path.open() as handle:
            events = [json.loads(line) for line in handle if line.strip()]
        columns = list(FIRST_COLUMNS)
        for event in events:
            columns += [key for key in event if key not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for event in events:
            writer.writerow({key: json.dumps(value) if isinstance(value, (dict, list)) else value
                             for key, value in event.items()})
        atomic_write(self.csv_path, lambda handle: handle.write(text.getvalue().encode()))
