"""The key table of a segment, columnar: one array per field, strings as one UTF-8 blob with offsets.

Loading a table is reading arrays, not parsing rows: no Python object per row exists until a row is
asked for (`ref(i)`), and selection (`take`), concatenation and prefix filters are vectorised.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SEQUENCER_WIDTH = 32
ORDER_DTYPE = f"S{SEQUENCER_WIDTH}"  # normalised sequencers: ASCII, so bytes compare like the strings
ENCODING = ("utf-8", "surrogatepass")  # as object_id hashes: no string raises, distinct strings stay distinct


def normalise_sequencer(sequencer: str) -> str:
    """S3 sequencers are hex strings of varying length: left-pad with zeros before comparing."""
    text = (sequencer or "0").strip().upper()
    return text.rjust(SEQUENCER_WIDTH, "0")


def object_id(bucket: str, key: str) -> int:
    """The 64-bit id of an object (bucket + key): every version of the object shares it.

    Hashes the UTF-8 bytes; a lone surrogate (an undecodable file name, PEP 383) is encoded as
    "surrogatepass" does, so no string raises and distinct strings stay distinct. Local scans key such
    names by `files.printable` before they get here.
    """
    digest = hashlib.blake2b(f"{bucket}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def object_ids(buckets: Sequence[str], keys: Sequence[str]) -> np.ndarray:
    return np.fromiter((object_id(b, k) for b, k in zip(buckets, keys, strict=True)), np.uint64, len(keys))



@dataclass(frozen=True, eq=False)
class Strings:
    """n strings as one UTF-8 blob and n + 1 offsets into it."""

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64, offsets[0] == 0

    @classmethod
    def of(cls, values: Iterable[str]) -> Strings:
        encoded = [v.encode(*ENCODING) for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(blob, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.blob.nbytes + self.offsets.nbytes)

    def __getitem__(self, row: int) -> str:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.blob[start:end].tobytes().decode(*ENCODING)

    def tolist(self) -> list[str]:
        text = self.blob.tobytes()
        bounds = self.offsets.tolist()
        return [text[a:b].decode(*ENCODING) for a, b in itertools.pairwise(bounds)]

    def take(self, rows: np.ndarray) -> Strings:
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # position j of the new blob reads old byte starts[row of j] + (j - new start of that row)
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
        return Strings(self.blob[index], offsets)

    @classmethod
    def concat(cls, parts: Sequence[Strings]) -> Strings:
        if not parts:
            return cls.of([])
        blob = np.concatenate([p.blob for p in parts])
        shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True)])
        return cls(blob, offsets.astype(np.int64))

    def startswith(self, prefix: str) -> np.ndarray:
        """A boolean per string: does it start with `prefix`? (vectorised over the blob)."""
        wanted = np.frombuffer(prefix.encode(*ENCODING), dtype=np.uint8)
        starts = self.offsets[:-1]
        match = (self.offsets[1:] - starts) >= len(wanted)
        for j, byte in enumerate(wanted):  # one vectorised pass per byte of the prefix
            candidates = np.flatnonzero(match)
            if not len(candidates):
                break
            match[candidates] = self.blob[starts[candidates] + j] == byte
        return match


MD5_HEX = re.compile(r"[0-9a-f]{32}")  # the ETag of a single-part upload (not SSE-KMS): an MD5 as hex


@dataclass(frozen=True, eq=False)
class Digests:
    """n ETags that are each an MD5 in 32 lowercase hex digits, kept as 16 bytes each (not 32 + an offset).

    Most S3 objects have such an ETag; a table with any other (multipart "…-N", an SSE-KMS ETag, none at all)
    keeps its ETags as Strings instead. `etags(values)` picks.
    """

    raw: np.ndarray  # (n, 16) uint8

    @classmethod
    def of(cls, values: Sequence[str]) -> Digests:
        return cls(np.frombuffer(bytes.fromhex("".join(values)), np.uint8).reshape(len(values), 16).copy())

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)

    def __getitem__(self, row: int) -> str:
        return self.raw[row].tobytes().hex()

    def tolist(self) -> list[str]:
        text = self.raw.tobytes().hex()
        return [text[i : i + 32] for i in range(0, len(text), 32)]

    def take(self, rows: np.ndarray) -> Digests:
        return Digests(self.raw[np.asarray(rows, dtype=np.int64)])


Etags = Strings | Digests


def etags(values: Iterable[str]) -> Etags:
    """ETags as 16-byte digests when every one is a plain MD5 (and there is at least one), else as strings."""
    listed = list(values)
    if listed and all(MD5_HEX.fullmatch(v) for v in listed):
        return Digests.of(listed)
    return Strings.of(listed)


def concat_etags(parts: Sequence[Etags]) -> Etags:
    if parts and all(isinstance(p, Digests) for p in parts):
        return Digests(np.concatenate([p.raw for p in parts]))  # type: ignore[union-attr]
    return Strings.concat([p if isinstance(p, Strings) else Strings.of(p.tolist()) for p in parts])


@dataclass(frozen=True, eq=False)
class KeyTable:
    """Rows of object versions (bucket, key, etag, size, sequencer, time) as columns.

    `ids` (64-bit object ids) and `orders` (normalised sequencers) are what live-entry resolution
    reads; the rest is read per hit. `extra` holds optional string columns (content type, tags …).
    """

    ids: np.ndarray  # uint64
    orders: np.ndarray  # S32
    sizes: np.ndarray  # int64
    times: np.ndarray  # float64
    bucket_of: np.ndarray  # uint32 index into buckets
    buckets: tuple[str, ...]
    keys: Strings
    etags: Etags  # Digests (16 B each) when every ETag is a plain MD5, else Strings
    extra: Mapping[str, Strings] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def column_bytes(self) -> dict[str, int]:
        """Bytes held by each column (what the query path may read of this table)."""
        columns = {"ids": self.ids, "orders": self.orders, "sizes": self.sizes, "times": self.times}
        sizes = {name: int(array.nbytes) for name, array in columns.items()}
        sizes |= {"bucket_of": int(self.bucket_of.nbytes), "keys": self.keys.nbytes, "etags": self.etags.nbytes}
        return sizes | {f"extra.{name}": strings.nbytes for name, strings in self.extra.items()}

    @property
    def nbytes(self) -> int:
        return sum(self.column_bytes().values())

    @classmethod
    def from_refs(cls, refs: Sequence[object]) -> KeyTable:
        """From ObjectRef-like rows (bucket, key, etag, size, sequencer, time attributes)."""
        buckets = sorted({r.bucket for r in refs})  # type: ignore[attr-defined]
        slot = {b: i for i, b in enumerate(buckets)}
        keys = [r.key for r in refs]  # type: ignore[attr-defined]
        bucket_names = [r.bucket for r in refs]  # type: ignore[attr-defined]
        return cls(
            ids=object_ids(bucket_names, keys),
            orders=np.array([normalise_sequencer(r.sequencer) for r in refs], dtype=ORDER_DTYPE),  # type: ignore[attr-defined]
            sizes=np.array([int(r.size) for r in refs], dtype=np.int64),  # type: ignore[attr-defined]
            times=np.array([float(r.time) for r in refs], dtype=np.float64),  # type: ignore[attr-defined]
            bucket_of=np.array([slot[b] for b in bucket_names], dtype=np.uint32),
            buckets=tuple(buckets),
            keys=Strings.of(keys),
            etags=etags(r.etag for r in refs),  # type: ignore[attr-defined]
        )

    @classmethod
    def empty(cls) -> KeyTable:
        return cls.from_refs([])

    def bucket(self, row: int) -> str:
        return self.buckets[int(self.bucket_of[row])]

    def take(self, rows: np.ndarray) -> KeyTable:
        """The table of just these rows, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        return KeyTable(
            ids=self.ids[rows],
            orders=self.orders[rows],
            sizes=self.sizes[rows],
            times=self.times[rows],
            bucket_of=self.bucket_of[rows],
            buckets=self.buckets,
            keys=self.keys.take(rows),
            etags=self.etags.take(rows),
            extra={name: column.take(rows) for name, column in self.extra.items()},
        )

    @classmethod
    def concat(cls, tables: Sequence[KeyTable]) -> KeyTable:
        tables = [t for t in tables if len(t)] or list(tables[:1])
        if not tables:
            return cls.empty()
        buckets = sorted({b for t in tables for b in t.buckets})
        slot = {b: i for i, b in enumerate(buckets)}
        names = sorted({n for t in tables for n in t.extra})
        return cls(
            ids=np.concatenate([t.ids for t in tables]),
            orders=np.concatenate([t.orders for t in tables]).astype(ORDER_DTYPE),
            sizes=np.concatenate([t.sizes for t in tables]),
            times=np.concatenate([t.times for t in tables]),
            bucket_of=np.concatenate(
                [np.array([slot[b] for b in t.buckets], dtype=np.uint32)[t.bucket_of] for t in tables]
            ),
            buckets=tuple(buckets),
            keys=Strings.concat([t.keys for t in tables]),
            etags=concat_etags([t.etags for t in tables]),
            extra={
                n: Strings.concat([t.extra.get(n) or Strings.of([""] * len(t)) for t in tables]) for n in names
            },
        )

    # --- storage: arrays named <prefix><field> inside a segment's npz -------------------------------

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {
            f"{prefix}ids": self.ids,
            f"{prefix}orders": self.orders,
            f"{prefix}sizes": self.sizes,
            f"{prefix}times": self.times,
            f"{prefix}bucket_of": self.bucket_of,
            f"{prefix}buckets": _json_bytes(list(self.buckets)),
            f"{prefix}keys": self.keys.blob,
            f"{prefix}key_offsets": self.keys.offsets,
        }
        if isinstance(self.etags, Digests):
            arrays[f"{prefix}etag_digests"] = self.etags.raw
        else:
            arrays[f"{prefix}etags"], arrays[f"{prefix}etag_offsets"] = self.etags.blob, self.etags.offsets
        for name, column in self.extra.items():
            arrays[f"{prefix}x:{name}"] = column.blob
            arrays[f"{prefix}x:{name}:offsets"] = column.offsets
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> KeyTable:
        names = [n[len(prefix) + 2 :] for n in arrays if n.startswith(f"{prefix}x:") and not n.endswith(":offsets")]
        return cls(
            ids=np.asarray(arrays[f"{prefix}ids"], dtype=np.uint64),
            orders=np.asarray(arrays[f"{prefix}orders"]).astype(ORDER_DTYPE, copy=False),  # a view when stored so
            sizes=np.asarray(arrays[f"{prefix}sizes"], dtype=np.int64),
            times=np.asarray(arrays[f"{prefix}times"], dtype=np.float64),
            bucket_of=np.asarray(arrays[f"{prefix}bucket_of"], dtype=np.uint32),
            buckets=tuple(json.loads(np.asarray(arrays[f"{prefix}buckets"]).tobytes() or b"[]")),
            keys=Strings(np.asarray(arrays[f"{prefix}keys"]), np.asarray(arrays[f"{prefix}key_offsets"])),
            etags=Digests(np.asarray(arrays[f"{prefix}etag_digests"]))
            if f"{prefix}etag_digests" in arrays
            else Strings(np.asarray(arrays[f"{prefix}etags"]), np.asarray(arrays[f"{prefix}etag_offsets"])),
            extra={
                n: Strings(np.asarray(arrays[f"{prefix}x:{n}"]), np.asarray(arrays[f"{prefix}x:{n}:offsets"]))
                for n in names
            },
        )


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
