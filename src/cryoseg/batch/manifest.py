"""The batch manifest, OUT/manifest.json: every tomogram's state, attempts, error, outputs and seconds.

Only the process that drives the batch writes it, atomically after every change, so it is never half-written. A
rerun into the same folder reads it: tomograms that are done (and whose report.json is there) are skipped, the
rest run again. States: "pending" (not yet run, or interrupted), "running" (handed to the cluster), "done",
"failed" (every attempt failed; `error` says why).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, InputError
from ..io.atomic import atomic_path
from ..io.report import REPORT, as_json
from .tomograms import Tomogram

MANIFEST = "manifest.json"
STATES = ("pending", "running", "done", "failed")


@dataclass
class Entry:
    """One tomogram's record."""

    path: str  # the tomogram's file, or its place in a copick project
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    seconds: float | None = None
    output: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    finished: str | None = None


class Manifest:
    """The states of a batch's tomograms, saved to `folder/manifest.json` on every change."""

    def __init__(self, folder: Path, job: dict[str, Any], entries: dict[str, Entry]) -> None:
        self.folder, self.job, self.entries = Path(folder), job, entries

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @classmethod
    def open(cls, folder: str | Path, job: dict[str, Any], tomograms: list[Tomogram]) -> Manifest:
        """The manifest of `folder` for this job and these tomograms: read back when a batch of the same job ran
        there before (new tomograms join as pending), otherwise new. A different job's manifest is refused."""
        folder = Path(folder)
        job = as_json(job)
        entries: dict[str, Entry] = {}
        path = folder / MANIFEST
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                saved_job = data["job"]
                entries = {name: Entry(**e) for name, e in data["tomograms"].items()}
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise CorruptFileError(f"{path}: not a readable batch manifest ({type(exc).__name__}: {exc})") from None
            if saved_job != job:
                raise InputError(f"{folder} holds a batch of another job ({_job_difference(saved_job, job)}); write "
                                 "this one to another folder")
        for t in tomograms:
            entry = entries.get(t.name)
            if entry is None or entry.path != t.source:
                entries[t.name] = Entry(t.source)
            elif entry.state == "done" and not (folder / t.name / REPORT).is_file():
                entries[t.name] = Entry(t.source)  # its results were removed: run it again
            elif entry.state != "done":
                entry.state, entry.attempts, entry.error = "pending", 0, None
        manifest = cls(folder, job, entries)
        manifest.save()
        return manifest

    def names(self, state: str) -> list[str]:
        return [name for name, e in self.entries.items() if e.state == state]

    def update(self, name: str, **changes: Any) -> None:
        entry = self.entries[name]
        for key, value in changes.items():
            setattr(entry, key, value)
        if changes.get("state") in ("done", "failed"):
            entry.finished = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"job": self.job, "tomograms": {n: asdict(e) for n, e in self.entries.items()}}, indent=1)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text + "\n")

    def counts(self) -> dict[str, int]:
        return {state: len(self.names(state)) for state in STATES}


def _job_difference(saved: Any, job: dict[str, Any]) -> str:
    if not isinstance(saved, dict):
        return "unreadable job"
    keys = sorted(k for k in set(saved) | set(job) if saved.get(k) != job.get(k))
    return "differs in " + ", ".join(keys[:4])
