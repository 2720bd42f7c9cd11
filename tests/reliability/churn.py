"""A writer to kill: appends, deletes, overwrites, compacts and fits one directory index, forever.

Run as `python -m tests.reliability.churn INDEX JOURNAL SEED`. Before each operation it journals
`begin <op> <keys…>` and after the operation returned (committed) `done`, each line flushed and
fsynced, so whoever kills it knows which changes are certain and which were in flight.
Embeddings are synthetic (the model is not what crash safety depends on); 512-d so that fit and
compaction take long enough to be killed in the middle.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.errors import BadParameter
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore

DIM = 512
BATCH = 40
FIT_AT = 400  # live images before the first fit (low, so fits happen within a short test)
SPEC = ModelSpec(
    name="churn",
    onnx_file="none.onnx",
    input_name="pixels",
    input_size=32,
    mean=(0, 0, 0),
    std=(1, 1, 1),
    resize="crop",
    crop_ratio=1.0,
    output_name="features",
    output_dim=DIM,
    opset=17,
    sha256="c" * 64,
)


def vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Journal:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115  # open until the process is killed

    def line(self, text: str) -> None:
        self.handle.write(text + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())


def sequencer() -> str:
    return f"{time.time_ns():020X}"


def main(location: str, journal_path: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    index = ImageIndex(LocalStore(location, grace_seconds=0))
    index.ensure(SPEC, bits=64)
    journal = Journal(Path(journal_path))
    known: list[str] = []  # keys this run added (others may exist from earlier runs)
    serial = 0
    while True:
        op = pick.choices(["add", "delete", "overwrite", "compact", "fit"], weights=[6, 2, 2, 1, 1])[0]
        if op == "add" or len(known) < BATCH:
            keys = [f"s{seed}-{serial + i}.jpg" for i in range(BATCH)]
            serial += BATCH
            journal.line("begin add " + " ".join(keys))
            refs = [ObjectRef(bucket="b", key=k, sequencer=sequencer()) for k in keys]
            index.append(refs, vectors(rng, len(refs)))
            known += keys
        elif op in ("delete", "overwrite"):
            keys = pick.sample(known, 5)
            journal.line(f"begin {op} " + " ".join(keys))
            refs = [ObjectRef(bucket="b", key=k, sequencer=sequencer()) for k in keys]
            if op == "delete":
                index.delete(refs)
                known = [k for k in known if k not in keys]
            else:
                index.append(refs, vectors(rng, len(refs)))
        elif op == "compact":
            journal.line("begin compact")
            index.compact(min_segments=2)
        else:
            journal.line("begin fit")
            with contextlib.suppress(BadParameter):  # too few live images yet
                index.fit(bits=64, dims=128, min_count=FIT_AT)
        journal.line("done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
