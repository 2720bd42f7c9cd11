"""The model: ONNX export vs PyTorch, class separation on real photos, any ONNX model with a manifest,
and the staleness check of build-model."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.build_model import DEFAULT_INPUT_SIZE
from imgsearch.embed import Embedder, Preprocessor
from imgsearch.errors import ModelNotFound
from imgsearch.modelspec import MANIFEST_NAME, ModelSpec, sha256_file

THREADS = 2  # the machine is shared: keep ONNX Runtime and PyTorch to two threads


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_module():
    torch = pytest.importorskip("torch", reason="PyTorch (the build extra) is not installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    try:
        return Embedder.load(threads=THREADS)
    except ModelNotFound as error:
        pytest.skip(f"the default ONNX model is not built ({error}): run `imgsearch build-model`")


@pytest.fixture(scope="module")
def feature_model(torch_module):
    pytest.importorskip("efficientnet_lite_pytorch", reason="the build extra is not installed")
    from imgsearch.build_model import feature_model

    return feature_model()


# --- (a) ONNX vs PyTorch ------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_matches_pytorch_on_real_images(corel1k, embedder, feature_model, torch_module) -> None:
    items = corel1k.stratified(2)[:16]
    batch = np.stack([embedder.pixels(corel1k.read(item)) for item in items])
    spec = embedder.spec
    assert batch.shape == (16, 3, spec.input_size, spec.input_size) and batch.dtype == np.float32

    (onnx,) = embedder.session.run([spec.output_name], {spec.input_name: batch})
    with torch_module.no_grad():
        reference = feature_model(torch_module.from_numpy(batch)).numpy()

    assert onnx.shape == reference.shape == (16, spec.output_dim)
    assert reference.std() > 0.05, "the PyTorch features are degenerate: the comparison would mean nothing"
    difference = float(np.abs(onnx - reference).max())
    print(
        f"\nONNX vs PyTorch, 16 Corel images: max abs difference {difference:.3g} "
        f"(features up to {reference.max():.3g})"
    )
    assert difference <= 1e-4, f"ONNX and PyTorch pooled features differ by up to {difference:.3g} (> 1e-4)"

    # Embedder.run is exactly these features, L2-normalised.
    normalised = onnx / np.linalg.norm(onnx, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.run(list(batch)), normalised, atol=1e-6)


# --- (b) class separation on Corel-1k -----------------------------------------------------------------


def precision_at(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, database: np.ndarray, k: int):
    """Mean fraction of the k nearest database images (by cosine; a query never matches itself) that share
    the query's label, overall and per query."""
    sims = vectors[queries] @ vectors[database].T
    sims[queries[:, None] == database[None, :]] = -np.inf
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    hits = labels[database][top] == labels[queries][:, None]
    return float(hits.mean()), hits.mean(axis=1)


@pytest.mark.slow
def test_real_images_cluster_by_class(corel1k, embedder) -> None:
    items = corel1k.items
    assert len(items) == 1000 and len(corel1k.labels) == 10
    data = [corel1k.read(item) for item in items]
    vectors, failures = embedder.embed_bytes(data)
    assert failures == []
    assert vectors.shape == (1000, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    labels = np.array([item.label for item in items])
    everyone = np.arange(len(items))
    precision, per_query = precision_at(vectors, labels, everyone, everyone, 10)
    per_class = {label: float(per_query[labels == label].mean()) for label in corel1k.labels}
    split = np.array([item.split for item in items])
    protocol, _ = precision_at(vectors, labels, everyone[split == "query"], everyone[split == "db"], 10)
    print(
        f"\nCorel-1k precision@10, all 1000 leave-one-out: {precision:.3f} (chance 0.1); "
        f"100 queries vs 900 db: {protocol:.3f}"
    )
    print("  per class: " + ", ".join(f"{label} {value:.2f}" for label, value in per_class.items()))
    assert precision > 0.8, f"precision@10 is {precision:.3f}; per class {per_class}"


# --- (c) any ONNX image model with a manifest ---------------------------------------------------------

TINY_SPEC = {
    "name": "tiny-test-model",
    "onnx_file": "tiny.onnx",
    "input_name": "image",
    "input_size": 64,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "pixel_scale": 255.0,
    "resize": "squash",
    "crop_ratio": 1.0,
    "output_name": "embedding",
    "output_dim": 8,
    "opset": 17,
    "source": "tests/unit/test_model.py",
    "comment": "fields ModelSpec does not know are ignored",
}


@pytest.fixture(scope="module")
def tiny_model(torch_module, tmp_path_factory) -> tuple[Path, object]:
    """A small random CNN exported to ONNX with its own manifest: (model_dir, the PyTorch module)."""
    torch = torch_module
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        # Conv → ReLU → global mean pool, then the pooled features centred and mapped to 8 signed
        # dimensions: pooled ReLU features of a random net alone are all-positive and nearly parallel.
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, stride=2)
            self.head = torch.nn.Linear(16, 8, bias=False)

        def forward(self, pixels):
            pooled = torch.relu(self.conv(pixels)).mean(dim=(2, 3))
            return self.head(pooled - pooled.mean(dim=1, keepdim=True))

    net = Tiny().eval()
    model_dir = tmp_path_factory.mktemp("tiny-model")
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, 64, 64),),
        str(model_dir / TINY_SPEC["onnx_file"]),
        input_names=[TINY_SPEC["input_name"]],
        output_names=[TINY_SPEC["output_name"]],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    manifest = dict(TINY_SPEC, sha256=sha256_file(model_dir / TINY_SPEC["onnx_file"]))
    (model_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return model_dir, net


@pytest.fixture(scope="module")
def tiny_embedder(tiny_model) -> Embedder:
    return Embedder.load(tiny_model[0], threads=1, batch_size=4)


def pattern(seed: int, size: tuple[int, int]) -> Image.Image:
    """A distinct generated picture: coloured stripes (random colour, period, angle, contrast) and noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    base, amplitude = rng.integers(0, 256, 3), rng.uniform(0, 120, 3)
    period, angle = rng.uniform(3, 30), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:height, 0:width] * (64 / max(width, height))
    wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    pixels = base + wave[..., None] * amplitude + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


SIZES = [(64, 64), (100, 37), (37, 100), (200, 150), (31, 31), (640, 480)]


def test_manifest_of_another_model_loads(tiny_model) -> None:
    spec = ModelSpec.load(tiny_model[0])
    assert spec.name == "tiny-test-model"
    assert (spec.input_name, spec.output_name, spec.output_dim) == ("image", "embedding", 8)
    assert spec.input_size == 64 and spec.resize == "squash" and spec.pixel_scale == 255.0
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_preprocessor_applies_pixel_scale_mean_and_std(tiny_model) -> None:
    """pixel_scale 255: pixels become 0..1 before mean/std, so white is (1 - mean) / std."""
    spec = ModelSpec.load(tiny_model[0])
    mean, std = np.array(spec.mean), np.array(spec.std)
    for colour, value in (((255, 255, 255), 1.0), ((0, 0, 0), 0.0)):
        pixels = Preprocessor(spec)(Image.new("RGB", (100, 37), colour))
        assert pixels.shape == (3, 64, 64) and pixels.dtype == np.float32  # squashed, not cropped
        np.testing.assert_allclose(pixels[:, 10, 10], (value - mean) / std, rtol=1e-5)

    # The same model described in 0..255 units (pixel_scale 1) gives the same network input.
    in_255 = dataclasses.replace(spec, pixel_scale=1.0, mean=tuple(mean * 255), std=tuple(std * 255))
    image = pattern(1, (90, 70))
    np.testing.assert_allclose(Preprocessor(in_255)(image), Preprocessor(spec)(image), rtol=1e-4, atol=1e-4)

    # And EfficientNet-Lite's manifest ((x - 127) / 128 on 0..255 pixels).
    lite = dataclasses.replace(spec, pixel_scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3)
    np.testing.assert_allclose(Preprocessor(lite)(Image.new("RGB", (8, 8), (255, 255, 255)))[:, 0, 0], 1.0)


def test_another_onnx_model_embeds_unchanged(tiny_model, tiny_embedder, torch_module) -> None:
    embedder = tiny_embedder
    assert embedder.dim == 8
    images = [pattern(seed, size) for seed, size in enumerate(SIZES)]
    data = [encoded(image, "PNG") for image in images] + [b"not an image"]
    vectors, failures = embedder.embed_bytes(data)

    assert vectors.shape == (len(images), 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [(f.index, f.code) for f in failures] == [(len(images), "not_an_image")]

    # The ONNX file computes what the PyTorch module does on the preprocessed pixels.
    batch = np.stack([embedder.preprocess(image) for image in images])
    with torch_module.no_grad():
        reference = tiny_model[1](torch_module.from_numpy(batch)).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_another_onnx_model_through_index_and_search(tiny_embedder, tmp_path) -> None:
    from imgsearch.index import ImageIndex
    from imgsearch.ingest import index_files, scan
    from imgsearch.search import Searcher

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    originals: dict[str, bytes] = {}
    for seed in range(12):
        fmt = ("PNG", "JPEG", "WEBP")[seed % 3]
        key = f"{'sub/' if seed % 2 else ''}img{seed:02d}.{fmt.lower()}"
        originals[key] = encoded(pattern(100 + seed, SIZES[seed % len(SIZES)]), fmt)
        (folder / key).write_bytes(originals[key])
    (folder / "notes.txt").write_text("not an image\n")

    vectors, failures = tiny_embedder.embed_bytes(list(originals.values()))
    assert failures == []
    cosines = vectors @ vectors.T - 2 * np.eye(len(vectors))
    # Stored floats are float16 (cosine error ~1e-3): the images must differ by more than that.
    assert cosines.max() < 0.995, f"two generated images embed almost alike ({cosines.max():.4f})"

    index = ImageIndex.open(str(tmp_path / "index"))
    report = index_files(index, tiny_embedder, scan([folder]))
    assert report.indexed == 12
    assert [Path(path).name for path, _ in report.skipped] == ["notes.txt"]
    assert "not a recognised image" in report.skipped[0][1]
    assert index.manifest().model["dim"] == 8

    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert searcher.count == 12
    for metric in ("hybrid", "cosine"):
        results = searcher.search(vectors, k=3, metric=metric)
        for key, hits in zip(originals, results, strict=True):
            assert hits[0].key == key, f"{metric}: {key} found {[(h.key, h.score) for h in hits]}"
            assert hits[0].score > 0.99
            assert hits[0].size == len(originals[key]) and hits[0].bucket == "local"
    assert searcher.search_key("sub/img01.jpeg", k=1)[0].key == "sub/img01.jpeg"

    again = index_files(index, tiny_embedder, scan([folder]))
    assert (again.indexed, again.unchanged, len(again.skipped)) == (0, 12, 1)


# --- (d) build-model staleness ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(torch_module, tmp_path_factory) -> Iterator[tuple[Path, list[tuple[ModelSpec, bool]]]]:
    """Two exports in one module-scoped folder: fresh, unchanged, then rebuilt after damage."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="the build extra is not installed")
    pytest.importorskip("onnx", reason="the build extra is not installed")
    from imgsearch.build_model import build_model

    model_dir = tmp_path_factory.mktemp("build") / "model"
    calls = [build_model(model_dir), build_model(model_dir)]
    spec = calls[0][0]
    with open(model_dir / spec.onnx_file, "ab") as handle:
        handle.write(b"\0")
    calls.append(build_model(model_dir))
    yield model_dir, calls


@pytest.mark.slow
def test_build_model_rebuilds_only_when_stale(built) -> None:
    model_dir, calls = built
    assert [rebuilt for _, rebuilt in calls] == [True, False, True]
    assert calls[0][0] == calls[1][0]
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([MANIFEST_NAME, *calls[2][0].files()])


@pytest.mark.slow
def test_build_model_manifest(built) -> None:
    from imgsearch.build_model import MEAN, MODEL_NAME, OPSET, STD, is_current

    model_dir, calls = built
    spec = calls[-1][0]
    written = json.loads((model_dir / MANIFEST_NAME).read_text())
    assert written["name"] == MODEL_NAME
    assert written["input_size"] == DEFAULT_INPUT_SIZE and written["resize"] == "crop"
    assert tuple(written["mean"]) == MEAN and tuple(written["std"]) == STD
    assert written["input_name"] == "pixels" and written["output_name"] == "features"
    assert written["output_dim"] == 1280
    assert written["opset"] == OPSET
    assert written["file_sha256"] == sha256_file(model_dir / written["onnx_file"])
    assert ModelSpec.load(model_dir) == spec
    assert is_current(model_dir, spec.source)

    import onnx

    graph = onnx.load(str(model_dir / spec.onnx_file)).graph
    assert [i.name for i in graph.input] == ["pixels"] and [o.name for o in graph.output] == ["features", "logits"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    ["not json", "no onnx_file field", "no opset field", "wrong sha256", "bad resize", "other recipe"],
)
def test_damaged_manifest_is_not_current(built, tmp_path, damage: str) -> None:
    """is_current must answer False (so build-model rebuilds) for any damaged or foreign manifest."""
    from imgsearch.build_model import is_current

    model_dir, calls = built
    spec = calls[-1][0]
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / spec.onnx_file).write_bytes((model_dir / spec.onnx_file).read_bytes())
    manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    source = spec.source
    if damage == "not json":
        text = "{ not json"
    else:
        if damage == "no onnx_file field":
            del manifest["onnx_file"]
        elif damage == "no opset field":
            del manifest["opset"]
        elif damage == "wrong sha256":
            manifest["sha256"] = "0" * 64
        elif damage == "bad resize":
            manifest["resize"] = "stretch"
        elif damage == "other recipe":
            source = "0" * 16
        text = json.dumps(manifest)
    (copy / MANIFEST_NAME).write_text(text)
    assert not is_current(copy, source)


def test_the_default_backbone_keeps_its_recipe_digest_and_another_changes_it() -> None:
    """`--variant` must not rebuild existing lite0 model folders: the default's recipe is what it was."""
    from imgsearch.build_model import recipe

    weights = Path(__file__)  # any file: the digest covers its checksum
    assert recipe(weights=weights, input_size=176, resize="crop") == recipe(
        weights=weights, input_size=176, resize="crop", variant="lite0"
    )
    assert recipe(weights=weights, input_size=176, resize="crop", variant="lite2") != recipe(
        weights=weights, input_size=176, resize="crop"
    )


def test_an_unknown_backbone_is_refused() -> None:
    from imgsearch.build_model import build_model

    with pytest.raises(ValueError, match="variant 'lite9' is not one of lite0, lite2"):
        build_model(Path("/nonexistent"), variant="lite9")
