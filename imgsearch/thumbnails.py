"""Thumbnails: a small JPEG of each image, made at ingest from the decode the model already did, kept
beside the index (`thumbs/<object id>/<ETag>.jpg` in its store; an index on EFS or S3 Vectors has no S3 store
to presign from, so the stack gives those a bucket of their own, THUMBNAIL_URI), and returned as `thumb_url`
with hits.

Named by object and ETag, a thumbnail never needs a lookup: a hit names its own, and a new version of an
object gets a new one. Thumbnails of deleted or overwritten versions are left in place (about 5 KB
each): which version is live is the index's business, decided by sequencer, and a thumbnail is cheaper
to keep than to delete safely under reordered events. The decode is the model's (JPEG draft mode at the model's input scale, and the
centred region of a very long image), so a thumbnail is at most THUMB_SIDE pixels on its long side.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from .keytable import object_id
from .segment import ObjectRef
from .store import THUMBNAIL_PREFIX, Store, open_store

THUMB_SIDE = 160  # pixels on the long side: the page's grid cells are 170 px wide
THUMB_QUALITY = 80  # JPEG quality: ~5 KB for a photo at 160 px
PREFIX = THUMBNAIL_PREFIX


def thumbnail(image: Image.Image, *, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> bytes:
    """A JPEG of `image` at most `side` pixels on its long side (RGB)."""
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def store(location: str, beside: Store | None) -> Store | None:
    """Where thumbnails are kept: `location` (s3://BUCKET[/PREFIX], a bucket of their own for an index on
    EFS or S3 Vectors) when given, else `beside` (the index's own store, or None: the backend has none)."""
    return open_store(location) if location else beside


def folder(bucket: str, key: str) -> str:
    """Where an object's thumbnails are (one per version)."""
    return f"{PREFIX}{object_id(bucket, key):016x}/"


def name(bucket: str, key: str, etag: str) -> str:
    """The store name of one version's thumbnail."""
    return f"{folder(bucket, key)}{etag or 'no-etag'}.jpg"


def write_all(store: Store, items: Sequence[tuple[ObjectRef, bytes]], *, threads: int = 8) -> None:
    """Store the thumbnails of some new object versions (same name, same bytes: a retry rewrites them);
    an empty one (none could be made) is skipped."""
    items = [item for item in items if item[1]]
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        list(pool.map(lambda item: store.write(name(item[0].bucket, item[0].key, item[0].etag), item[1]), items))

