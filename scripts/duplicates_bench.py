#!/usr/bin/env python3
"""Near-duplicate finding on Corel-1k with copies made here: precision and recall of the pairs found.

    .venv/bin/python scripts/duplicates_bench.py --datasets ../shared/datasets --out bench-out

Every third Corel-1k image gets three copies: re-encoded (JPEG quality 40), resized (half size, JPEG
quality 90) and cropped (the centre 80 %, JPEG quality 90). All 1,000 originals and the copies are
indexed by `imgsearch index` (the default path: the encoder is fitted past 1,000 images), then
`imgsearch.duplicates.find_duplicates` runs at several radii. A true pair is two images of one original
(the original and a copy, or two copies). Scored twice: the pairs `find_pairs` reports, and every pair
inside a group of `find_duplicates`. Also: how often `collapse=true` leaves only one image of an
original's family in its top 10.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchlib import save_results, say
from PIL import Image

VARIANTS = ("reencoded", "resized", "cropped")
RADII = (0.05, 0.08, 0.10, 0.15, 0.20, 0.25)




def variant(data: bytes, kind: str) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    if kind == "reencoded":
        image.save(out, "JPEG", quality=40)
    elif kind == "resized":
        image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.BILINEAR).save(
            out, "JPEG", quality=90
        )
    else:
        w, h = image.size
        dx, dy = int(w * 0.1), int(h * 0.1)
        image.crop((dx, dy, w - dx, h - dy)).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_set(datasets: Path, folder: Path) -> dict[str, str]:
    """key → the original it comes from (an original maps to itself)."""
    family: dict[str, str] = {}
    with zipfile.ZipFile(datasets / "corel1k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for i, name in enumerate(names):
            data = archive.read(name)
            key = name.split("/", 1)[1]
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(data)
            family[key] = key
            if i % 3 == 0:
                for kind in VARIANTS:
                    copy = f"copies/{kind}/{key}"
                    (folder / copy).parent.mkdir(parents=True, exist_ok=True)
                    (folder / copy).write_bytes(variant(data, kind))
                    family[copy] = key
    return family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.duplicates import find_duplicates, find_pairs
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher

    scratch = Path(tempfile.mkdtemp(prefix="duplicates-"))
    try:
        folder, location = scratch / "images", scratch / "index"
        family = make_set(args.datasets, folder)
        copies = sum(1 for k, o in family.items() if k != o)
        say("images", {"originals": len(family) - copies, "copies": copies})
        cli = str(Path(sys.executable).with_name("imgsearch"))
        started = time.perf_counter()
        subprocess.run([cli, "index", "--index", str(location), str(folder)], check=True, capture_output=True)
        say("index_seconds", round(time.perf_counter() - started, 1))
        searcher = Searcher(ImageIndex.open(str(location)))
        searcher.refresh(force=True)
        say("encoder", searcher.manifest.encoder if searcher.manifest else "")
        originals: dict[str, list[str]] = {}
        for key, original in family.items():
            originals.setdefault(original, []).append(key)
        truth = {frozenset(p) for keys in originals.values() for p in itertools.combinations(keys, 2)}
        by_kind = {kind: {frozenset((o, f"copies/{kind}/{o}")) for o in originals if len(originals[o]) > 1}
                   for kind in VARIANTS}
        say("true_pairs", len(truth))
        def scored(found: set[frozenset[str]]) -> dict[str, float]:
            hits = len(found & truth)
            return {
                "found": len(found),
                "precision": round(hits / max(len(found), 1), 4),
                "recall": round(hits / len(truth), 4),
                **{f"recall_{kind}": round(len(found & pairs) / len(pairs), 4) for kind, pairs in by_kind.items()},
            }

        for radius in RADII:
            started = time.perf_counter()
            pairs = find_pairs(searcher, radius=radius)
            seconds = time.perf_counter() - started
            groups = find_duplicates(searcher, radius=radius)
            in_groups = {frozenset(p) for g in groups for p in itertools.combinations(g.keys, 2)}
            say(f"radius_{radius:g}", {
                "bits": round(radius * 256),
                "pairs": scored({frozenset((p.a, p.b)) for p in pairs}),
                "groups": {"count": len(groups), **scored(in_groups)},
                "seconds": round(seconds, 2),
            })
        # collapse=true on "more like this" of each original that has copies
        alone, collapsed_ok = 0, 0
        with_copies = [o for o, keys in originals.items() if len(keys) > 1]
        for original in with_copies:
            hits = searcher.search_key(original, k=10, collapse=True)
            members = [h.key for h in hits if family.get(h.key) == original]
            collapsed_ok += members == [original]
            plain = searcher.search_key(original, k=10)
            alone += sum(1 for h in plain if family.get(h.key) == original) > 1
        say("collapse.queries", len(with_copies))
        say("collapse.plain_top10_with_copies", round(alone / len(with_copies), 4))
        say("collapse.only_the_original_left", round(collapsed_ok / len(with_copies), 4))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save_results(args.out, "duplicates-results.json")


if __name__ == "__main__":
    main()
