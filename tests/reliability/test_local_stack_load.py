"""The local stack under concurrent uploads, deletes and overwrites, restarted cleanly in the middle of them,
with duplicated and stale notifications: nothing lost, duplicated or resurrected, and the restart is not refused.

Sizes come from the environment so that `make reliability` runs the issue's full sizes (300 uploads by 16
threads, 50 deletes, 20 overwrites); `make test` runs a smaller load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..localstack import CLI
from .load import dump, run_load

UPLOADS = int(os.environ.get("RELIABILITY_UPLOADS", "120"))
THREADS = int(os.environ.get("RELIABILITY_THREADS", "8"))
DELETES = int(os.environ.get("RELIABILITY_DELETES", "20"))
OVERWRITES = int(os.environ.get("RELIABILITY_OVERWRITES", "10"))


@pytest.mark.skipif(not CLI.exists(), reason=f"{CLI} not found: install the package first (make setup)")
def test_under_load_with_a_restart_nothing_is_lost_duplicated_or_resurrected(tmp_path: Path) -> None:
    report = run_load(tmp_path, uploads=UPLOADS, threads=THREADS, deletes=DELETES, overwrites=OVERWRITES, replays=10)
    figures = dump(report)

    assert not report.restart_refused, figures
    assert report.indexed_before_restart == UPLOADS, figures
    assert report.bucket_missing == [], figures
    assert report.lost == [], figures
    assert report.resurrected == [], figures
    assert report.duplicated == 0, figures
    assert report.deletes_applied == DELETES and report.overwrites_applied == OVERWRITES, figures
    assert report.indexed == UPLOADS - DELETES, figures
    assert report.similar_of_deleted == {404: DELETES}, figures
    assert report.dead_letters == 0, figures
