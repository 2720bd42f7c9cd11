"""Feature extraction: image → L2-normalised CNN embedding, batched, with ONNX Runtime; optionally the
image's top concepts (class scores) from the same forward pass."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .concepts import TOP_K, TopConcepts, top_concepts
from .errors import InvalidImage, ModelNotFound
from .images import DEFAULT_LIMITS, Decoded, Limits, decode_part
from .modelspec import ModelSpec, default_model_dir
from .thumbnails import thumbnail

WHOLE_RESIZE = 16  # a crop scales the whole image first when that is at most 16 crops' worth of pixels


@dataclass(frozen=True)
class Failure:
    """An input that could not be embedded, and why."""

    index: int
    reason: str
    code: str = "not_an_image"


@dataclass(frozen=True)
class Embedded:
    """What `Embedder.embed_all` returns: vectors (in input order, good inputs only), the failures, the
    indices of the inputs that produced the vectors, and their top concepts when asked for."""

    vectors: np.ndarray
    failures: list[Failure]
    indices: list[int]
    concepts: TopConcepts | None = None
    thumbnails: list[bytes] | None = None  # one JPEG per vector (b"" if none could be made), when asked for


class Preprocessor:
    """Resize (crop, squash or keep aspect), normalise and lay out pixels as the model expects.

    The work is bounded by the output: only the source pixels under the output are resampled (Pillow
    `resize(box=...)`). A `Decoded` part (cropped or reduced by `decode_part`) gives the same region of
    the whole image as the whole would.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.mean = np.asarray(spec.mean, dtype=np.float32) * spec.pixel_scale
        self.std = np.asarray(spec.std, dtype=np.float32) * spec.pixel_scale
        size = spec.input_size
        self.min_side = round(size / spec.crop_ratio) if spec.resize == "crop" else size
        # The widest centred region the output uses (1.0: the crop's square; None: the whole image).
        self.centre = 1.0 if spec.resize == "crop" else None

    def __call__(self, image: Image.Image | Decoded) -> np.ndarray:
        part = image if isinstance(image, Decoded) else Decoded.whole(image)
        size = self.spec.input_size
        width, height = part.size
        if self.spec.resize == "squash":
            resized = _resample(part, (size, size), (0, 0, width, height))
        elif self.spec.resize == "keep":
            short = self.min_side
            scale = short / min(width, height)
            new_w, new_h = max(short, round(width * scale)), max(short, round(height * scale))
            # Long side rounded to a multiple of 32 and capped at 2x (squashed beyond), so batches
            # share few shapes.
            new_w, new_h = (_round32(v, short) for v in (new_w, new_h))
            resized = _resample(part, (new_w, new_h), (0, 0, width, height))
        else:
            resized = self.crop(part)
        pixels = np.asarray(resized, dtype=np.float32)
        pixels = (pixels - self.mean) / self.std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def crop(self, part: Decoded) -> Image.Image:
        """The centred size×size crop of the whole image scaled so its short side is `min_side`.

        Up to `WHOLE_RESIZE` crops' worth of pixels, the whole image is scaled, then cropped; beyond,
        only the source region under the crop is resampled (the same region and, up to the filter's
        fixed-point rounding, the same pixels), never 3.5 M × 201 pixels for a 20000×1 source.
        """
        size, short = self.spec.input_size, self.min_side
        width, height = part.size
        scale = short / min(width, height)
        new_w, new_h = max(short, round(width * scale)), max(short, round(height * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        if part.is_whole and new_w * new_h <= WHOLE_RESIZE * size * size:
            image = part.image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            return image.crop((left, top, left + size, top + size))
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + size, new_w), min(top + size, new_h)
        sx, sy = width / new_w, height / new_h
        inner = _resample(part, (x1 - x0, y1 - y0), (x0 * sx, y0 * sy, x1 * sx, y1 * sy))
        if inner.size == (size, size):
            return inner
        canvas = Image.new(inner.mode, (size, size))  # crop_ratio > 1: padded with black, as crop() pads
        canvas.paste(inner, (x0 - left, y0 - top))
        return canvas


def _resample(part: Decoded, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """Bilinear resize of a box of the whole image (in its pixels) to `size`, from a decoded part."""
    if part.is_whole and box == (0, 0, *part.size):
        return part.image.resize(size, Image.Resampling.BILINEAR)
    return part.image.resize(size, Image.Resampling.BILINEAR, box=part.locate(box))


def _round32(value: int, short: int) -> int:
    return min(max(short, 32 * round(value / 32)), 2 * short)


class Embedder:
    """Runs an ONNX image model once loaded; thread count and batch size are configurable.

    >>> embedder = Embedder.load()                       # doctest: +SKIP
    >>> vectors, failures = embedder.embed_bytes([open("cat.jpg", "rb").read()])  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_dir: Path,
        *,
        threads: int | None = None,
        batch_size: int = 32,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.batch_size = batch_size
        self.limits = limits
        self.preprocess = Preprocessor(spec)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("IMGSEARCH_THREADS", "0")) or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(Path(model_dir) / spec.onnx_file), options, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def load(cls, model_dir: Path | None = None, **kwargs: object) -> Embedder:
        model_dir = Path(model_dir) if model_dir else default_model_dir()
        return cls(ModelSpec.load(model_dir), model_dir, **kwargs)  # type: ignore[arg-type]

    @property
    def dim(self) -> int:
        return self.spec.output_dim

    @property
    def has_concepts(self) -> bool:
        """True when the model also outputs class scores (the manifest's `concepts`)."""
        return self.spec.concepts is not None and self.spec.concepts.output_name in {
            o.name for o in self.session.get_outputs()
        }

    def pixels(self, data: bytes) -> np.ndarray:
        """Decode and preprocess one image (raises InvalidImage)."""
        return self.preprocess(self.decode(data))

    def decode(self, data: bytes) -> Decoded:
        """Decode the part of one image the model uses (raises InvalidImage)."""
        prep = self.preprocess
        return decode_part(data, min_side=prep.min_side, centre=prep.centre, limits=self.limits)

    def run(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Forward pass over preprocessed images (grouped by shape), L2-normalised float32 rows."""
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, pixels in enumerate(batch):
            groups.setdefault(pixels.shape, []).append(i)
        for rows in groups.values():
            stacked = np.stack([batch[i] for i in rows])
            (features,) = self.session.run([self.spec.output_name], {self.spec.input_name: stacked})
            out[rows] = features
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def run_concepts(self, batch: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass giving both: L2-normalised vectors (as `run`) and class logits (n × classes)."""
        if not self.has_concepts or self.spec.concepts is None:
            raise ModelNotFound(
                f"the model {self.spec.name} has no class-score output: rebuild it with `imgsearch build-model`"
            )
        names = [self.spec.output_name, self.spec.concepts.output_name]
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        logits = np.empty((len(batch), self.spec.concepts.count), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, pixels in enumerate(batch):
            groups.setdefault(pixels.shape, []).append(i)
        for rows in groups.values():
            stacked = np.stack([batch[i] for i in rows])
            features, scores = self.session.run(names, {self.spec.input_name: stacked})
            out[rows] = features
            logits[rows] = scores
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12), logits

    def embed_all(
        self,
        read: Callable[[int], bytes],
        count: int,
        *,
        progress: Callable[[int], None] | None = None,
        concepts: bool = True,
        top: int = TOP_K,
        thumbnails: bool = False,
    ) -> Embedded:
        """`embed_stream` that also keeps each image's `top` concepts (when the model has them and
        `concepts` is true), from the same forward pass, and a thumbnail of each (`thumbnails`), from the
        same decode."""
        keep = concepts and self.has_concepts
        chunks: list[np.ndarray] = []
        tops: list[TopConcepts] = []
        done: list[int] = []
        failures: list[Failure] = []
        thumbs: dict[int, bytes] = {}

        def consume(prepared: list[tuple[int, np.ndarray | Failure]]) -> None:
            if not keep:
                self._consume(prepared, chunks, done, failures, progress)
                return
            good = [(i, p) for i, p in prepared if isinstance(p, np.ndarray)]
            failures.extend(p for _, p in prepared if isinstance(p, Failure))
            if good:
                vectors, logits = self.run_concepts([p for _, p in good])
                chunks.append(vectors)
                tops.append(top_concepts(logits, top))
                done.extend(i for i, _ in good)
            if progress:
                progress(len(prepared))

        self._pipeline(read, count, consume, thumbs if thumbnails else None)
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)
        return Embedded(
            vectors,
            failures,
            done,
            TopConcepts.concat(tops, top) if keep else None,
            [thumbs.get(i, b"") for i in done] if thumbnails else None,
        )

    def embed_bytes(self, items: Sequence[bytes]) -> tuple[np.ndarray, list[Failure]]:
        """Embed many encoded images; returns vectors for the good ones (in order) and the failures."""
        vectors, failures, _ = self.embed_stream(lambda i: items[i], len(items))
        return vectors, failures

    def embed_stream(
        self,
        read: Callable[[int], bytes],
        count: int,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, list[Failure], list[int]]:
        """Embed `count` inputs fetched by `read(i)`, decoding the next batch while this one runs.

        Returns (vectors, failures, indices of the inputs that produced the vectors).
        """
        chunks: list[np.ndarray] = []
        done: list[int] = []
        failures: list[Failure] = []
        self._pipeline(read, count, lambda prepared: self._consume(prepared, chunks, done, failures, progress))
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)
        return vectors, failures, done

    def _pipeline(
        self,
        read: Callable[[int], bytes],
        count: int,
        consume: Callable[[list[tuple[int, np.ndarray | Failure]]], None],
        thumbs: dict[int, bytes] | None = None,
    ) -> None:
        """Decode batch i + 1 on a thread while `consume` runs batch i (and thumbnail it into `thumbs`)."""
        starts = range(0, count, self.batch_size)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[list[tuple[int, np.ndarray | Failure]]] | None = None
            for start in starts:
                batch_ids = range(start, min(start + self.batch_size, count))
                nxt = pool.submit(self._prepare, read, batch_ids, thumbs)
                if pending is not None:
                    consume(pending.result())
                pending = nxt
            if pending is not None:
                consume(pending.result())

    def _prepare(
        self, read: Callable[[int], bytes], ids: Iterable[int], thumbs: dict[int, bytes] | None = None
    ) -> list[tuple[int, np.ndarray | Failure]]:
        prepared: list[tuple[int, np.ndarray | Failure]] = []
        for i in ids:
            try:
                decoded = self.decode(read(i))
                prepared.append((i, self.preprocess(decoded)))
                if thumbs is not None:
                    with contextlib.suppress(OSError, ValueError):  # a thumbnail is a nicety: never fail the image
                        thumbs[i] = thumbnail(decoded.image)
            except InvalidImage as error:
                prepared.append((i, Failure(i, error.reason, error.code)))
            except OSError as error:
                prepared.append((i, Failure(i, f"cannot read: {error}", "unreadable")))
        return prepared

    def _consume(
        self,
        prepared: list[tuple[int, np.ndarray | Failure]],
        chunks: list[np.ndarray],
        done: list[int],
        failures: list[Failure],
        progress: Callable[[int], None] | None,
    ) -> None:
        good = [(i, p) for i, p in prepared if isinstance(p, np.ndarray)]
        failures.extend(p for _, p in prepared if isinstance(p, Failure))
        if good:
            chunks.append(self.run([p for _, p in good]))
            done.extend(i for i, _ in good)
        if progress:
            progress(len(prepared))

