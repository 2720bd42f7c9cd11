"""kill -9 at random points of append, delete, compaction and fit: nothing committed is lost or undone."""

from __future__ import annotations

import os
from pathlib import Path

from .kills import run_kills

KILLS = int(os.environ.get("RELIABILITY_KILLS", "30"))


def test_a_writer_killed_at_random_points_loses_nothing_committed_and_leaves_no_orphan(tmp_path: Path) -> None:
    report = run_kills(tmp_path, kills=KILLS, seed=1)

    assert report.opened == KILLS  # the index opened after every kill
    assert sum(report.expected.ops.values()) > KILLS  # the writer got work done between kills
    assert report.lost == set()
    assert report.resurrected == set()
    assert report.duplicated == 0
    assert report.after_collect.orphans == 0
    assert report.orphans_collected == report.before_collect.orphans
