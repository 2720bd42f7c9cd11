"""What an index already holds for an object (by bucket + key), and the sequencer a CLI write must carry.

Sequencers decide which version of an object is live (resolve.live_masks): per object the entry with
the greatest (sequencer, position in the manifest) wins, so on equal sequencers the later write wins;
a tombstone hides every entry whose sequencer is at most its own.

Writes that do not come from an S3 event get these sequencers:

* **Listing-derived entries** (`imgsearch index s3://…`, `imgsearch backfill`) carry the lowest
  sequencer, "0". A real S3 event's sequencer (an opaque hex string per key, in practice 16+ hex
  digits) is always greater, so a later real event — an overwrite or a delete — always wins and is
  never undone by a listing. A re-run after an object changed records the new ETag at "0" again:
  equal sequencers go to the later row, so the new version wins.
* **Tombstones written by the CLI** (`imgsearch delete`, `imgsearch index --prune`) carry the
  sequencer of the entry they remove: a tombstone wins a tie, so it hides exactly that entry and
  nothing newer (an upload whose event arrives later has a greater sequencer and stays live).
* **After a CLI tombstone**, an object listed again (it came back) must beat that tombstone, so its
  entry carries the tombstone's sequencer + 1. This applies only below LISTING_CEILING (2^32):
  sequencers the CLI itself wrote. Above it a tombstone came from a real S3 delete, and only the
  object's next real event (with a greater sequencer) brings it back.
* **Local files** (bucket "local") have no events at all: their sequencer is the file's mtime in
  nanoseconds (hex), bumped above a CLI tombstone the same way if a file comes back with an old mtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .errors import IndexNotFound
from .index import ImageIndex
from .keytable import normalise_sequencer, object_id
from .search import Searcher
from .segment import ObjectRef, table_ref

LISTING_SEQUENCER = "0"
LISTING_CEILING = normalise_sequencer(f"{(1 << 32) - 1:X}")  # CLI-written orders stay at or below this
LOCAL_BUCKET = "local"


def is_cli_order(order: str) -> bool:
    """Whether a normalised sequencer is one the CLI writes for listings (not a real S3 event's)."""
    return normalise_sequencer(order) <= LISTING_CEILING


def after(order: str) -> str:
    """The sequencer just above a normalised one (hex + 1)."""
    return f"{int(order, 16) + 1:X}"


@dataclass
class Known:
    """The live entries, tombstones and recorded rejections of an index, looked up by bucket + key.

    An index that does not exist yet knows nothing (everything is new).
    """

    index: ImageIndex
    searcher: Searcher | None = None  # None until the index exists
    _rejected: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, index: ImageIndex) -> Known:
        known = cls(index)
        known.refresh()
        return known

    def refresh(self) -> None:
        """Catch up with the index (only new segments are read); an index still missing knows nothing."""
        searcher = self.searcher or Searcher(self.index)
        try:
            changed = searcher.refresh(force=True)
        except IndexNotFound:
            return
        self.searcher = searcher
        if changed:
            self._load_rejections()

    def _load_rejections(self) -> None:
        assert self.searcher is not None
        self._rejected = {(r.bucket, r.key): r.etag for r in self.searcher.rejections()}

    # --- look-ups ---------------------------------------------------------------------------------

    def entry(self, bucket: str, key: str) -> ObjectRef | None:
        """The live entry of an object, or None."""
        if self.searcher is None:
            return None
        found = self.searcher.live.locate(object_id(bucket, key))
        if found is None:
            return None
        pos, row = found
        return table_ref(self.searcher.live.segments[pos].segment.table, row)

    def deleted_order(self, bucket: str, key: str) -> str | None:
        """The newest tombstone's (normalised) sequencer for an object, or None."""
        if self.searcher is None:
            return None
        live = self.searcher.live
        if not len(live.dead_ids):
            return None
        oid = np.uint64(object_id(bucket, key))
        slot = int(np.searchsorted(live.dead_ids, oid))
        if slot < len(live.dead_ids) and live.dead_ids[slot] == oid:
            return bytes(live.dead_orders[slot]).decode("ascii")
        return None

    def unchanged(self, bucket: str, key: str, etag: str) -> bool:
        """Already indexed at this ETag, or already recorded as a rejection at this ETag."""
        entry = self.entry(bucket, key)
        if entry is not None and entry.etag == etag:
            return True
        return bool(etag) and self._rejected.get((bucket, key)) == etag

    def listing_sequencer(self, bucket: str, key: str) -> str:
        """The sequencer of a listing-derived entry for this object (see the module docstring)."""
        order = normalise_sequencer(LISTING_SEQUENCER)
        entry = self.entry(bucket, key)
        if entry is not None and is_cli_order(entry.order):
            order = max(order, entry.order)  # equal: the later row (this one) wins
        dead = self.deleted_order(bucket, key)
        if dead is not None and is_cli_order(dead) and dead >= order:
            order = normalise_sequencer(after(dead))
        return order.lstrip("0") or "0"

    def file_sequencer(self, key: str, natural: str) -> str:
        """A local file's sequencer: its mtime, or just above a CLI tombstone that would hide it."""
        order = normalise_sequencer(natural)
        dead = self.deleted_order(LOCAL_BUCKET, key)
        if dead is not None and dead >= order:
            return after(dead)
        return natural

    def entries(self, bucket: str, prefix: str = "") -> Iterator[ObjectRef]:
        """The live entries of one bucket whose key starts with prefix (vectorised per segment)."""
        if self.searcher is None:
            return
        for live in self.searcher.live.segments:
            table = live.segment.table
            if bucket not in table.buckets:
                continue
            mask = live.alive & (table.bucket_of == table.buckets.index(bucket))
            if prefix:
                mask &= table.keys.startswith(prefix)
            for row in np.flatnonzero(mask):
                yield table_ref(table, int(row))

    @property
    def count(self) -> int:
        return self.searcher.count if self.searcher is not None else 0

    @property
    def rejected(self) -> int:
        manifest = self.searcher.manifest if self.searcher is not None else None
        return manifest.rejected if manifest is not None else 0

    def buckets(self) -> list[str]:
        if self.searcher is None:
            return []
        return sorted({b for live in self.searcher.live.segments for b in live.segment.table.buckets})
