"""What the benchmark scripts share: the printed-and-kept figures, the data sets' zip layout, AP, p50 / p99.

Each script runs in its own process, so one module-level RESULTS per run holds what `say` printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import zipfile
from pathlib import Path

import numpy as np

RESULTS: dict[str, object] = {}


def say(name: str, value: object) -> None:
    """Print a figure and keep it for the run's JSON file."""
    RESULTS[name] = value
    print(f"{name}: {value}", flush=True)


def save_results(out: Path, name: str) -> Path:
    """Write what `say` kept to out/name as JSON (the folder made if missing); its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(RESULTS, indent=1, default=str))
    return path


def index_ab(description: str | None, *, pause: bool = False) -> tuple[argparse.Namespace, np.ndarray]:
    """The A/B scripts' command line (--index, --queries, --raw) and their queries: the last --queries rows of
    --raw, the scale benchmark's CIFAR-10 queries. Prints the command line first."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--raw", type=Path, default=Path("bench-out/cifar-raw.npy"))
    if pause:
        parser.add_argument("--pause", type=float, default=8.0, help="seconds before each cold load")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}")
    return args, np.load(args.raw, mmap_mode="r")[-args.queries :].astype(np.float32)


def read_zip(path: Path) -> tuple[zipfile.ZipFile, str, list[dict[str, str]]]:
    """A data set's archive, its root folder and the rows of its labels.csv (../shared/datasets)."""
    archive = zipfile.ZipFile(path)
    root = path.stem
    rows = list(csv.DictReader(io.TextIOWrapper(archive.open(f"{root}/labels.csv"), encoding="utf-8")))
    return archive, root, rows


def average_precision(relevant: np.ndarray, total_relevant: int | None = None) -> float:
    """AP of one ranking; divides by the relevant items retrieved (deep-hashing mAP@K) unless total given."""
    hits = np.cumsum(relevant)
    denominator = total_relevant if total_relevant is not None else int(relevant.sum())
    if denominator == 0:
        return 0.0
    precision = hits / np.arange(1, len(relevant) + 1)
    return float((precision * relevant).sum() / denominator)


def p50_p99(values_ms: list[float]) -> dict[str, float]:
    """{"p50", "p99"} of some timings in ms, rounded to 0.01 (p99: the value 1 % from the top)."""
    ordered = sorted(values_ms)
    return {"p50": round(statistics.median(ordered), 2), "p99": round(ordered[int(len(ordered) * 0.99) - 1], 2)}
