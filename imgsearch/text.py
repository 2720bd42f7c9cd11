"""Text → vectors: the manifest's text encoder (ONNX Runtime + a `tokenizer.json`), and the two ways a
query becomes something to rank images by.

- With a sentence model (`TextSpec.space == "concepts"`, the default MiniLM): the query is matched to
  weighted ImageNet concepts, lexically over lemmas and definitions and by sentence similarity to the
  concept texts (`ConceptMatcher`); `TextSearch.text_vector` turns them into a direction in the image
  feature space.
- With an image–text pair (`space == "image"`, e.g. an exported OpenCLIP model): the text is embedded
  straight into the image vectors' space.

Needs `tokenizers` (the `text` extra) when a text encoder is loaded; never PyTorch.

>>> search = TextSearch.load()                    # doctest: +SKIP
>>> query = search.concepts("puppy")              # doctest: +SKIP
>>> vector = search.text_vector("a sandy beach")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .concepts import (
    ConceptHead,
    ConceptQuery,
    LexicalMatcher,
    NoConceptMatches,
    Vocabulary,
    content_words,
    select,
)
from .errors import ModelNotFound
from .modelspec import ModelSpec, TextSpec, default_model_dir

MATCH_MODES = ("lexical", "sentence", "fused")


class TextEncoder:
    """Runs a text encoder: texts → unit vectors (batch × dim, float32).

    One text per run by default: a dynamically quantised (int8) graph scales its activations per
    tensor, so in a batch a text's vector would depend on its neighbours (up to 0.03 per coordinate
    with MiniLM int8); alone, a concept text and the same query text get the same vector.
    """

    def __init__(self, spec: TextSpec, model_dir: Path, *, threads: int | None = None, batch_size: int = 1) -> None:
        import onnxruntime as ort

        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ModelNotFound(
                "the text encoder needs the tokenizers package: pip install -e '.[text]'"
            ) from None
        started = time.perf_counter()
        self.spec = spec
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(Path(model_dir) / spec.tokenizer_file))
        padding = self.tokenizer.padding or {}
        self.pad_id = int(padding.get("pad_id", 0))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=spec.pad_to or spec.max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("IMGSEARCH_THREADS", "0")) or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(Path(model_dir) / spec.onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self.load_seconds = time.perf_counter() - started

    @property
    def dim(self) -> int:
        return self.spec.dim

    def tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int64, padded to the longest text (or to `pad_to`)."""
        encodings = self.tokenizer.encode_batch(texts)
        width = self.spec.pad_to or max((len(e.ids) for e in encodings), default=1)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of `texts`, in order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = self.tokens([texts[i] for i in rows])
            feeds = {self.spec.input_ids: ids}
            if self.spec.attention_mask:
                feeds[self.spec.attention_mask] = mask
            (vectors,) = self.session.run([self.spec.output_name], feeds)
            out[rows] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class SentenceRule:
    """When sentence similarity makes a concept count, and how much.

    A query counts as understood by the sentence model alone when its best concept's cosine reaches
    `accept` (nonsense words reach 0.22–0.36 with MiniLM; object words 0.45–0.75). The concepts
    kept are those within `margin` of the best (at most `top`), weighted linearly from 1 (the best) to
    0 (at best − margin).
    """

    accept: float = 0.40
    margin: float = 0.20
    top: int = 100


@dataclass(frozen=True)
class FusionRule:
    """How lexical evidence and sentence weights combine: lexical·evidence/scale + (1 − lexical)·sentence.

    The evidence is divided by max(its best, `scale`), so a query whose words only occur deep inside
    definitions (weak evidence) leans on the sentence model. Concepts ≥ keep × the best stay, at most `top`.
    """

    lexical: float = 0.3
    scale: float = 1.0
    keep: float = 0.2
    top: int = 100
    strong: float = 0.4  # a word hit this strong (a lemma word, the definition's genus) is enough alone


def sentence_weights(sims: np.ndarray, rule: SentenceRule) -> np.ndarray:
    """Dense weights from cosines: 1 for the best concept, falling to 0 at best − margin (at most `top`)."""
    best = float(sims.max())
    weights = np.clip((sims - (best - rule.margin)) / rule.margin, 0.0, None).astype(np.float32)
    if rule.top < len(weights):
        cut = np.argpartition(-weights, rule.top)[rule.top :]
        weights[cut] = 0.0
    return weights


class SentenceMatcher:
    """Query → weighted concepts by cosine between the query's and the concepts' sentence vectors."""

    def __init__(self, encoder: TextEncoder, concept_vectors: np.ndarray, *, rule: SentenceRule | None = None) -> None:
        self.encoder = encoder
        self.vectors = np.ascontiguousarray(concept_vectors, dtype=np.float32)
        self.rule = rule or SentenceRule()

    def similarities(self, text: str) -> np.ndarray:
        """Cosine of the query with every concept text."""
        return self.vectors @ self.encoder.encode([text])[0]

    def match(self, text: str) -> ConceptQuery:
        """The concepts close to the query; raises NoConceptMatches below `rule.accept`."""
        sims = self.similarities(text)
        best = float(sims.max())
        if best < self.rule.accept:
            raise NoConceptMatches(content_words(text) or [text], best=best)
        return select(sentence_weights(sims, self.rule), keep=0.0, top=self.rule.top, text=text)


class ConceptMatcher:
    """Query → weighted concepts: lexical, sentence, or both fused (the default).

    The fused rule: a query is rejected (NoConceptMatches naming the words nothing matched) when the
    sentence model's best cosine is below `SentenceRule.accept` and no word of it has a strong lexical
    hit (`FusionRule.strong`: in a lemma, or among a definition's first words); otherwise the lexical
    evidence and the sentence weights are mixed by `FusionRule`.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        sentence: SentenceMatcher | None = None,
        *,
        fusion: FusionRule | None = None,
        lexical: LexicalMatcher | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.lexical = lexical or LexicalMatcher(vocabulary)
        self.sentence = sentence
        self.fusion = fusion or FusionRule()

    def match(self, text: str, *, mode: str = "fused") -> ConceptQuery:
        """Weighted concepts for `text`; raises NoConceptMatches naming the words nothing matched."""
        if mode not in MATCH_MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MATCH_MODES)}")
        if mode == "lexical" or self.sentence is None:
            return self.lexical.match(text)
        if mode == "sentence":
            return self.sentence.match(text)
        return self.fused(text, self.lexical.evidence(text), self.sentence.similarities(text))

    def fused(self, text: str, evidence: np.ndarray, sims: np.ndarray) -> ConceptQuery:
        """The fused rule on precomputed lexical evidence and sentence cosines."""
        assert self.sentence is not None
        rule, best_lexical, best_sentence = self.fusion, float(evidence.max()), float(sims.max())
        understood = best_sentence >= self.sentence.rule.accept
        if not content_words(text) or (not understood and self.lexical.strongest(text) < rule.strong):
            raise NoConceptMatches(self.lexical.unmatched(text) or content_words(text), best=best_sentence)
        weights = rule.lexical * evidence / max(best_lexical, rule.scale, 1e-6)
        if understood:
            weights = weights + (1.0 - rule.lexical) * sentence_weights(sims, self.sentence.rule)
        return select(weights, keep=rule.keep, top=rule.top, text=text)


@dataclass(frozen=True)
class TextQuery:
    """Everything the index needs to rank images by some words (`TextSearch.query`).

    `direction`: a unit vector in the raw embedding space (the concepts' classifier directions, or an
    image–text pair's text vector). `concepts` and `head`: the weighted concepts and the classifier that
    re-rank candidates (None with a pair: the direction alone ranks). `matched`: the best concepts as
    (class name, weight), for the answer ("matched: seashore, sandbar").
    """

    text: str
    direction: np.ndarray
    concepts: ConceptQuery | None = None
    head: ConceptHead | None = None
    matched: tuple[tuple[str, float], ...] = ()


class TextSearch:
    """Everything a text query needs, loaded once from the model folder.

    `concepts(query)` gives weighted concepts (rank stored per-image concepts with
    `concepts.concept_scores`); `text_vector(query)` gives a unit vector in the image feature space
    (search the index with it like an image's vector).
    """

    def __init__(self, spec: ModelSpec, model_dir: Path, *, threads: int | None = None) -> None:
        model_dir = Path(model_dir)
        missing = [name for name in spec.missing(model_dir) if name != spec.onnx_file]
        if missing:
            raise ModelNotFound(
                f"text search needs {', '.join(missing)} beside the model in {model_dir}: run "
                "`imgsearch build-model` there, or copy every file the manifest names"
            )
        self.spec = spec
        self.vocabulary = Vocabulary.load(model_dir, spec) if spec.concepts is not None else None
        self.head = ConceptHead.load(model_dir, spec) if spec.concepts and spec.concepts.head_file else None
        self.encoder = TextEncoder(spec.text, model_dir, threads=threads) if spec.text is not None else None
        self.matcher: ConceptMatcher | None = None
        if self.vocabulary is not None:
            sentence = None
            if self.encoder is not None and spec.text is not None and spec.text.space == "concepts":
                vectors = np.load(model_dir / spec.text.concept_vectors_file)
                if vectors.shape != (len(self.vocabulary), spec.text.dim):
                    raise ModelNotFound(
                        f"{spec.text.concept_vectors_file} holds {vectors.shape} vectors, not "
                        f"{len(self.vocabulary)} × {spec.text.dim}: rebuild with `imgsearch build-model --force`"
                    )
                sentence = SentenceMatcher(self.encoder, vectors)
            self.matcher = ConceptMatcher(self.vocabulary, sentence)

    @classmethod
    def load(cls, model_dir: Path | None = None, **kwargs: object) -> TextSearch:
        model_dir = Path(model_dir) if model_dir else default_model_dir()
        return cls(ModelSpec.load(model_dir), model_dir, **kwargs)  # type: ignore[arg-type]

    @property
    def in_image_space(self) -> bool:
        """True when the text encoder embeds straight into the image vectors' space (a trained pair)."""
        return self.spec.text is not None and self.spec.text.space == "image"

    def concepts(self, query: str, *, mode: str = "fused") -> ConceptQuery:
        """The query as weighted concepts (raises NoConceptMatches, or ModelNotFound without a vocabulary)."""
        if self.matcher is None:
            raise ModelNotFound(f"the model {self.spec.name} has no concept vocabulary: text → concepts needs one")
        return self.matcher.match(query, mode=mode)

    def query(self, text: str, *, mode: str = "fused") -> TextQuery:
        """Some words as a query (raises NoConceptMatches for words no concept matches)."""
        if self.in_image_space:
            return TextQuery(text=text, direction=self.text_vector(text, mode=mode))
        concepts = self.concepts(text, mode=mode) if text.strip() else None
        if concepts is None or not len(concepts):
            raise NoConceptMatches(content_words(text) or ([text.strip()] if text.strip() else []), best=None)
        if self.head is None:
            raise ModelNotFound(
                f"the model {self.spec.name} has neither an image–text pair nor a classifier head: "
                "text search needs one (see docs/TEXT-SEARCH.md)"
            )
        matched = tuple(concepts.describe(self.vocabulary)) if self.vocabulary is not None else ()
        return TextQuery(
            text=text, direction=self.head.direction(concepts), concepts=concepts, head=self.head, matched=matched
        )

    def text_vector(self, query: str, *, mode: str = "fused") -> np.ndarray:
        """A unit vector in the image feature space for `query`, to search the index with.

        With an image–text pair, the text encoder's output; otherwise the concepts' classifier
        directions, weighted (`ConceptHead.direction`), in the raw 1280-d feature space: for an
        index whose floats went through a PCA encoder use `head.projected(mean, back).direction`.
        """
        if not query.strip():
            raise NoConceptMatches([], best=None)
        if self.in_image_space and self.encoder is not None:
            return self.encoder.encode([query])[0]
        if self.head is None:
            raise ModelNotFound(
                f"the model {self.spec.name} has neither an image–text pair nor a classifier head: "
                "text search needs one (see docs/TEXT-SEARCH.md)"
            )
        return self.head.direction(self.concepts(query, mode=mode))
