"""The maintenance policy: when to fit the encoder and which segments to merge (size-tiered, LSM-style).

One set of thresholds, used by the compaction Lambda, `imgsearch compact` / `fit` and `imgsearch index`:
- segments are grouped in tiers by size (each tier `tier_factor` times the one below); once a tier holds
  `merge_at` segments they are merged into one, so every entry is rewritten about log(N) times, not
  once per compaction;
- no merge produces a segment larger than `max_base` entries: large bases are searched side by side and
  never rewritten to absorb a few new images (their deletes are tombstones in the newer segments);
- segments still encoded by an older encoder (after a fit) are re-encoded first, `max_base` at a time;
- the encoder is fitted (PCA + ITQ on a sample) once the index holds `fit_after` images and still uses
  the random-projection (LSH) one; its floats are discriminant directions of `fit_clusters(n)` k-means
  pseudo-classes when the sample is large enough for them (discriminant.py), plain PCA below.
Each `step` does one bounded piece of work, so a run cut short by a time limit loses at most that piece
(and leaves the manifest as it was).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import settings
from .encode import MIN_FIT, MIN_PER_CLUSTER
from .errors import BadParameter
from .manifest import Manifest, SegmentInfo
from .segment import HNSW_MIN

if TYPE_CHECKING:
    from .index import ImageIndex

MAX_BASE = settings.MAX_BASE.default  # entries in one segment at most (docs/BENCHMARKS.md: the largest merge fits a Lambda)
TIER_UNIT = 1_000  # segments smaller than this are tier 0
TIER_FACTOR = 8
MERGE_AT = settings.MERGE_AT.default
FIT_CLUSTERS = 100  # pseudo-classes of a fitted encoder's floats (CIFAR-10: hybrid mAP 0.568 → 0.605, docs/BENCHMARKS.md)
MIN_CLUSTERS = 50  # fewer would leave too few float dimensions (49): below 50 × 50 images, plain PCA


def fit_clusters(images: int) -> int:
    """The clusters of an encoder fitted on `images` embeddings: FIT_CLUSTERS, or as many as MIN_PER_CLUSTER
    images a cluster allow, or 0 (plain PCA floats) when that is under MIN_CLUSTERS."""
    clusters = min(FIT_CLUSTERS, images // MIN_PER_CLUSTER)
    return clusters if clusters >= MIN_CLUSTERS else 0


@dataclass(frozen=True, kw_only=True)
class Policy:
    max_base: int = MAX_BASE
    tier_unit: int = TIER_UNIT
    tier_factor: int = TIER_FACTOR
    merge_at: int = MERGE_AT
    fit_after: int = MIN_FIT
    auto_fit: bool = True

    def __post_init__(self) -> None:
        if self.max_base < 2 or self.tier_unit < 1 or self.tier_factor < 2 or self.merge_at < 2:
            raise BadParameter(
                "policy: max_base >= 2, tier_unit >= 1, tier_factor >= 2 and merge_at >= 2 are required"
            )

    def tier(self, count: int) -> int:
        if count < self.tier_unit:
            return 0
        return 1 + int(math.log(count / self.tier_unit, self.tier_factor))


@dataclass(frozen=True)
class Step:
    """One piece of maintenance: fit the encoder, or merge these segments into one."""

    action: str  # "fit" | "merge"
    names: tuple[str, ...] = ()
    reason: str = ""


def groups(segments: Sequence[SegmentInfo], max_base: int) -> list[list[SegmentInfo]]:
    """Consecutive runs of segments whose entries add up to at most max_base (a larger one stands alone)."""
    out: list[list[SegmentInfo]] = []
    for info in segments:
        if out and sum(s.count for s in out[-1]) + info.count <= max_base:
            out[-1].append(info)
        else:
            out.append([info])
    return out


def plan(manifest: Manifest, *, encoder_kind: str, policy: Policy = Policy()) -> Step | None:
    """The next step for this manifest, or None when the index needs nothing."""
    segments = manifest.segments
    if policy.auto_fit and encoder_kind == "lsh" and manifest.count >= policy.fit_after:
        return Step("fit", reason=f"{manifest.count} entries with the random-projection encoder")
    stale = [s for s in segments if s.encoder != manifest.encoder]
    if stale:
        first = groups(stale, policy.max_base)[0]
        return Step("merge", tuple(s.name for s in first), f"re-encode {len(first)} segment(s)")
    by_tier: dict[int, list[SegmentInfo]] = {}
    for info in segments:
        by_tier.setdefault(policy.tier(info.count), []).append(info)
    for tier in sorted(by_tier):
        members = by_tier[tier]
        if len(members) < policy.merge_at:
            continue
        for group in groups(members, policy.max_base):
            if len(group) >= 2:
                return Step("merge", tuple(s.name for s in group), f"{len(group)} segments of tier {tier}")
    return None


@dataclass(frozen=True)
class Done:
    """What one step did."""

    action: str
    reason: str
    segments: int  # folded (merge) or re-encoded later (fit)
    entries: int
    dropped: int
    seconds: float
    encoder: str


def run(
    index: ImageIndex,
    *,
    policy: Policy = Policy(),
    deadline: float | None = None,
    hnsw_min: int = HNSW_MIN,
    threads: int = 0,
    steps: int = 1000,
) -> list[Done]:
    """Take planned steps until there is nothing to do, `steps` were taken or time.monotonic() passes
    `deadline` (checked before each step after the first: a step started is finished, or cut short
    with no change to the manifest)."""
    done: list[Done] = []
    fitting = policy
    for _ in range(steps):
        if done and deadline is not None and time.monotonic() >= deadline:
            break
        manifest = index.manifest()
        step = plan(manifest, encoder_kind=index.encoder(manifest.encoder).kind, policy=fitting)
        if step is None:
            break
        started = time.monotonic()
        if step.action == "fit":
            try:
                encoder, _ = index.fit(
                    bits=index.encoder(manifest.encoder).bits, min_count=policy.fit_after, reencode=False
                )
            except BadParameter:  # fewer live images than entries written: not yet
                fitting = replace(policy, auto_fit=False)
                continue
            done.append(Done("fit", step.reason, len(manifest.segments), 0, 0, time.monotonic() - started, encoder.version))
            continue
        result = index.merge(list(step.names), hnsw_min=hnsw_min, threads=threads)
        done.append(
            Done("merge", step.reason, result.before, result.entries, result.dropped, result.seconds, result.encoder)
        )
    return done
