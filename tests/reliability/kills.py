"""Kill a writer (churn.py) with SIGKILL at random points, again and again; then say what survived."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from imgsearch.index import ImageIndex
from imgsearch.store import LocalStore

from .journal import Expected, Found, expected, found

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KillReport:
    kills: int
    opened: int  # times the index opened (and resolved) right after a kill
    expected: Expected
    before_collect: Found
    after_collect: Found
    orphans_collected: int

    @property
    def lost(self) -> set[str]:
        return self.expected.live - self.after_collect.live

    @property
    def resurrected(self) -> set[str]:
        return self.expected.deleted & self.after_collect.live

    @property
    def duplicated(self) -> int:
        return self.after_collect.rows - len(self.after_collect.live)


def run_kills(folder: Path, *, kills: int, seed: int = 0, min_wait: float = 0.3, max_wait: float = 2.0) -> KillReport:
    """`kills` runs of the writer, each SIGKILLed after a random time; the index is opened after each."""
    location, journal = folder / "index", folder / "journal.txt"
    pick = random.Random(seed)
    opened = 0
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.churn", str(location), str(journal), str(seed * 1000 + run)],
            cwd=ROOT,
            env=environment,
            stderr=subprocess.PIPE,
        )
        time.sleep(pick.uniform(min_wait, max_wait))
        if writer.poll() is not None:
            raise RuntimeError(f"the writer stopped by itself: {writer.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stderr.close()  # type: ignore[union-attr]
        if (location / "manifest.json").exists():
            found(ImageIndex(LocalStore(location)))  # raises if the index does not open
            opened += 1
    index = ImageIndex(LocalStore(location, grace_seconds=0))
    before = found(index)
    collected = index.collect_orphans(older_than=0).segments
    return KillReport(
        kills=kills,
        opened=opened,
        expected=expected(journal),
        before_collect=before,
        after_collect=found(index),
        orphans_collected=collected,
    )
