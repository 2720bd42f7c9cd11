#!/usr/bin/env python3
"""Corel-1k through the CLI, as a user runs it, for the quality levers that reach the default path.

    .venv/bin/python scripts/quality_cli.py --datasets ../shared/datasets [--model-dir DIR ...]

For each model folder (default: the model folder; others from `imgsearch build-model --model-dir DIR
--input-size N --variant V`): `imgsearch index` of the 900 database images (below the fitting threshold:
LSH codes and raw cosine, the default path for a small collection), then `imgsearch search --json --k 100`
of the 100 query images with the default metric and re-ranking (expansion over 10 hits, then
diffusion), and with `--expand 0` (no re-ranking).
mAP@100 as scripts/bench.py (AP over the relevant retrieved), and the ingest rate of the index run.
`--fit-small`: then `imgsearch fit --min-count 300` (PCA + ITQ fitted on the 900) and the same searches.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from benchlib import average_precision, save_results, say

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLI = str(Path(sys.executable).with_name("imgsearch"))




def run(*args: str, model_dir: Path | None) -> list[dict[str, object]]:
    extra = ["--model-dir", str(model_dir)] if model_dir else []
    done = subprocess.run([CLI, *args, *extra], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"imgsearch {args[0]} failed ({done.returncode}): {done.stderr[-1500:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--model-dir", type=Path, action="append", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--fit-small", action="store_true", help="also fit the encoder on the 900 and search again")
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    scratch = Path(tempfile.mkdtemp(prefix="quality-cli-"))
    try:
        with zipfile.ZipFile(args.datasets / "corel1k.zip") as archive:
            rows = list(csv.DictReader(io.TextIOWrapper(archive.open("corel1k/labels.csv"), encoding="utf-8")))
            for r in rows:
                target = scratch / "images" / r["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(f"corel1k/{r['path']}"))
        label = {r["path"]: r["label"] for r in rows}
        queries = [r["path"] for r in rows if r["split"] == "query"]
        for number, model_dir in enumerate(args.model_dir or [None]):
            name = str(model_dir) if model_dir else "default"
            location = scratch / f"index-{number}"
            started = time.perf_counter()
            facts = run("index", "--index", str(location), str(scratch / "images" / "db"), "--json", model_dir=model_dir)
            seconds = time.perf_counter() - started
            say(f"{name}.index", {**facts[-1], "img_per_s_with_cli_start": round(900 / seconds, 1)})
            stages = ["unfitted"] + (["fitted"] if args.fit_small else [])
            for stage in stages:
                if stage == "fitted":  # the small-index lever: a PCA + ITQ fitted on these 900 images
                    facts = run("fit", "--index", str(location), "--min-count", "300", "--json", model_dir=None)
                    say(f"{name}.fit", facts[-1] if facts else {})
                for expand in ("default", "0"):  # the default re-ranks (expand 10); 0 turns it off
                    flags = [] if expand == "default" else ["--expand", expand]
                    answers = run(
                        "search", "--index", str(location), *[str(scratch / "images" / q) for q in queries],
                        "--json", "--k", "100", *flags, model_dir=model_dir,
                    )
                    ap = []
                    for query, answer in zip(queries, answers, strict=True):
                        keys = [h["key"] for h in answer["hits"]]  # type: ignore[union-attr]
                        ap.append(average_precision(np.array([label.get(f"db/{k}") == label[query] for k in keys], float)))
                    prefix = name if stage == "unfitted" else f"{name}.fitted"
                    say(f"{prefix}.expand_{expand}.mAP@100", round(float(np.mean(ap)), 4))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save_results(args.out, "quality-cli.json")


if __name__ == "__main__":
    main()
