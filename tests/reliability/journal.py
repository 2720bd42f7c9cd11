"""What a killed writer's journal (see churn.py) says the index must hold, and what it does hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.index import ImageIndex
from imgsearch.resolve import live_masks


@dataclass
class Expected:
    live: set[str] = field(default_factory=set)  # certainly live
    deleted: set[str] = field(default_factory=set)  # certainly deleted
    uncertain: set[str] = field(default_factory=set)  # touched by an operation cut short
    ops: dict[str, int] = field(default_factory=dict)  # committed operations by kind
    cut: dict[str, int] = field(default_factory=dict)  # operations in flight when killed, by kind


def expected(journal: Path) -> Expected:
    state = Expected()
    pending: tuple[str, list[str]] | None = None

    def settle(op: str, keys: list[str], done: bool) -> None:
        (state.ops if done else state.cut)[op] = (state.ops if done else state.cut).get(op, 0) + 1
        if not done:
            state.uncertain.update(keys)
        elif op in ("add", "overwrite"):
            state.live.update(keys)
            state.deleted.difference_update(keys)
        elif op == "delete":
            state.live.difference_update(keys)
            state.deleted.update(keys)

    for line in journal.read_text(encoding="utf-8").splitlines():
        if line.startswith("begin "):
            if pending is not None:  # the previous run was killed in this operation
                settle(*pending, done=False)
            op, *keys = line.split()[1:]
            pending = (op, keys)
        elif line == "done" and pending is not None:
            settle(*pending, done=True)
            pending = None
    if pending is not None:
        settle(*pending, done=False)
    state.live -= state.uncertain
    state.deleted -= state.uncertain
    return state


@dataclass(frozen=True)
class Found:
    live: set[str]
    rows: int  # live rows (more than len(live) means a duplicated entry)
    segments: int
    orphans: int  # segment folders the manifest does not list


def found(index: ImageIndex) -> Found:
    manifest = index.manifest()
    segments = [index.load_segment(info) for info in manifest.segments]
    masks = live_masks(segments)
    keys = [k for s, m in zip(segments, masks, strict=True) for k in s.table.keys.take(np.flatnonzero(m)).tolist()]
    listed = {s.name for s in manifest.segments}
    folders = {n.split("/")[1] for n in index.store.names("segments/")}
    return Found(
        live=set(keys), rows=int(sum(int(np.count_nonzero(m)) for m in masks)), segments=len(segments),
        orphans=len(folders - listed),
    )
