"""The reliability suite at the issue's sizes; prints every figure docs/RELIABILITY.md records.

    .venv/bin/python scripts/reliability.py                # everything (about 10 minutes on 2 cores)
    .venv/bin/python scripts/reliability.py --only kills   # kills | load | inputs | api

Parts:
- kills:  a writer SIGKILLed at random points of append, delete, overwrite, compaction and fit;
- load:   `imgsearch local up --data`: concurrent uploads, deletes and overwrites, a clean restart in
          the middle, duplicated and stale notifications;
- inputs: hostile and malformed files through the decoder and file reader, peak memory each
          (scripts/hostile_inputs.py);
- api:    hand-made malformed HTTP and schemathesis from docs/openapi.yaml (scripts/fuzz_api.py).
Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("kills", "load", "inputs", "api")


def kills(count: int) -> None:
    from tests.reliability.kills import run_kills

    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        report = run_kills(Path(folder), kills=count, seed=7)
        took = time.monotonic() - started
    done, cut = report.expected.ops, report.expected.cut
    print(f"kills: {report.kills} SIGKILLs in {took:.0f} s; index opened after {report.opened} of them")
    print(f"  operations committed between kills: {json.dumps(done, sort_keys=True)}")
    print(f"  operations cut short by a kill:     {json.dumps(cut, sort_keys=True)}")
    print(f"  certainly live {len(report.expected.live)}, certainly deleted {len(report.expected.deleted)}, "
          f"in flight (either way) {len(report.expected.uncertain)}")
    print(f"  lost {len(report.lost)}, resurrected {len(report.resurrected)}, duplicated {report.duplicated}")
    print(f"  orphan segments left by kills {report.before_collect.orphans}, collected "
          f"{report.orphans_collected}, left {report.after_collect.orphans}")


def load(uploads: int, threads: int, deletes: int, overwrites: int, replays: int) -> None:
    from tests.reliability.load import run_load

    with tempfile.TemporaryDirectory() as folder:
        report = run_load(
            Path(folder), uploads=uploads, threads=threads, deletes=deletes, overwrites=overwrites, replays=replays
        )
    figures = report.figures()
    print(f"load: {uploads} uploads by {threads} threads, {deletes} deletes, {overwrites} overwrites, "
          f"clean restart on the same ports, {figures['replayed']} duplicated/stale notifications")
    for name in sorted(figures):
        print(f"  {name:>24}: {figures[name]}")


def script(name: str, *extra: str) -> None:
    print(f"{name}:", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / name), *extra], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--deletes", type=int, default=50)
    parser.add_argument("--overwrites", type=int, default=20)
    parser.add_argument("--replays", type=int, default=30)
    parser.add_argument("--fuzz-seconds", type=int, default=600, help="bound on the schemathesis run")
    args = parser.parse_args()
    parts = args.only or PARTS
    if "kills" in parts:
        kills(args.kills)
    if "load" in parts:
        load(args.uploads, args.threads, args.deletes, args.overwrites, args.replays)
    if "inputs" in parts:
        script("hostile_inputs.py")
    if "api" in parts:
        script("fuzz_api.py", "--max-seconds", str(args.fuzz_seconds), "--seed", "7")


if __name__ == "__main__":
    main()
