#!/usr/bin/env python3
"""Peak memory and time of every hostile input, answered the way the indexer and the Lambdas do.

    .venv/bin/python scripts/hostile_inputs.py [--threads 2] [--timeout 60]

Builds the corpus of tests/hostile.py in a temporary folder, loads and warms up the model, then for
each kind reads the entry with imgsearch.files.read_file and embeds it with Embedder.embed_bytes (the
path of `imgsearch index`, the ingest Lambda and POST /search), in one process. The peak RSS each input
adds is VmHWM after minus VmRSS before, with the kernel's peak reset in between (/proc/self/clear_refs).
Prints one row per kind, then the worst peak; exits 1 if any answer differs from the expected one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgsearch.embed import Embedder  # noqa: E402
from tests.hostile import INDEXED, KINDS, build, run, warm_up  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before an input counts as hung")
    args = parser.parse_args()

    embedder = Embedder.load(threads=args.threads)
    warm_up(embedder)
    wrong = 0
    worst = (0.0, "")
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        paths = build(Path(folder) / "corpus")
        print(f"{'kind':34} {'bytes':>12}  {'answer':28} {'peak MB':>8} {'seconds':>8}")
        for kind in KINDS:
            outcome = run(kind, paths[kind.name], embedder, timeout=args.timeout)
            answer = outcome.answer if outcome.answer == INDEXED else f"rejected {outcome.answer}"
            mark = "" if outcome.answer == kind.expect else f"   <-- expected {kind.expect}: {outcome.reason}"
            wrong += bool(mark)
            size = "-" if outcome.size is None else str(outcome.size)
            print(f"{kind.name:34} {size:>12}  {answer:28} {outcome.peak_mb:8.1f} {outcome.seconds:8.2f}{mark}")
            worst = max(worst, (outcome.peak_mb, kind.name))
    print(f"worst peak: {worst[0]:.1f} MB added, by {worst[1]}")
    print(f"{len(KINDS) - wrong} of {len(KINDS)} kinds answered as expected")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
