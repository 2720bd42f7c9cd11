"""Concepts: the image model's classes as words, and ranking images by them (pure NumPy).

At ingest the model's class logits become a few bytes per image (`top_concepts`: the top ids as
uint16 and their probabilities as uint8). At query time a text becomes weighted concepts
(`LexicalMatcher` here; sentence similarity in `imgsearch.text`), and images are ranked by
`concept_scores` (the stored top concepts), by `ConceptHead` (the classifier's rows as directions
against the stored vectors), or by both (`text_scores`, the chosen rule; docs/TEXT-SEARCH.md).

>>> vocabulary = Vocabulary.load(model_dir, spec)        # doctest: +SKIP
>>> query = LexicalMatcher(vocabulary).match("dogs")     # doctest: +SKIP
>>> scores = concept_scores(stored, query)               # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encode import spread
from .errors import BadParameter, ModelNotFound
from .modelspec import ModelSpec

TOP_K = 5  # concepts kept per image
SCORE_SCALE = 255  # stored probability = round(p * 255) in a uint8
TAG_MIN = 0.05  # a stored concept at least this probable is one of the image's tags (docs/TEXT-SEARCH.md)
TAG_MIN_SCORE = math.ceil(TAG_MIN * SCORE_SCALE)  # the same as a stored uint8 score (13)
STOPWORDS = frozenset(
    {
        "a", "an", "and", "any", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "its",
        "of", "on", "or", "some", "the", "to", "with", "without", "this", "that", "these", "those", "like", "but",
        "photo", "photos", "picture", "pictures", "image", "images",
    }
)


class NoConceptMatches(BadParameter):
    """No concept of the vocabulary matches the query's words."""

    def __init__(self, words: Sequence[str], *, best: float | None = None) -> None:
        self.words = list(words)
        self.best = best
        named = ", ".join(repr(w) for w in self.words) or "an empty query"
        super().__init__(f"no concept matches {named}: try other words (names of objects, animals, places)")


# --- the vocabulary ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    id: int
    synset: str
    lemmas: tuple[str, ...]
    definition: str

    @property
    def name(self) -> str:
        return self.lemmas[0] if self.lemmas else self.synset

    @property
    def text(self) -> str:
        """What a sentence model embeds for it: "lemma, lemma: definition"."""
        return f"{', '.join(self.lemmas)}: {self.definition}"


class Vocabulary:
    """The concepts, in the order of the model's class-score output."""

    def __init__(self, concepts: Sequence[Concept]) -> None:
        self.concepts = list(concepts)

    @classmethod
    def load(cls, model_dir: Path, spec: ModelSpec) -> Vocabulary:
        if spec.concepts is None:
            raise ModelNotFound(f"the model {spec.name} has no concept vocabulary: rebuild with `imgsearch build-model`")
        return cls.from_file(Path(model_dir) / spec.concepts.vocabulary_file, count=spec.concepts.count)

    @classmethod
    def from_file(cls, path: Path, *, count: int | None = None) -> Vocabulary:
        try:
            classes = json.loads(Path(path).read_text(encoding="utf-8"))["classes"]
            concepts = [
                Concept(i, str(c["synset"]), tuple(str(w) for w in c["lemmas"]), str(c["definition"]))
                for i, c in enumerate(classes)
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelNotFound(
                f"{path} is not a concept vocabulary ({error}): rebuild with `imgsearch build-model --force`"
            ) from None
        if count is not None and len(concepts) != count:
            raise ModelNotFound(f"{path} lists {len(concepts)} concepts, the model scores {count}")
        return cls(concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def __getitem__(self, index: int) -> Concept:
        return self.concepts[index]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]


# --- words ---------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lowercase words of `text` (accents dropped; letters and digits; "lady's" → "lady")."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    plain = re.sub(r"'s\b", "", plain)
    return re.findall(r"[a-z0-9]+", plain)


def content_words(text: str) -> list[str]:
    """The words of a query that can name something (stopwords dropped)."""
    return [w for w in words(text) if w not in STOPWORDS]


# Words that end a WordNet definition's genus phrase ("a sled | pulled by dogs", "small dog | of the
# pinscher type"); "of" does not when it follows a word that names a kind ("a breed of | dog").
GENUS_ENDS = frozenset(
    {
        "of", "with", "that", "which", "who", "whose", "by", "for", "from", "in", "on", "at", "to", "as", "or",
        "and", "having", "used", "pulled", "drawn", "made", "resembling", "found", "native", "usually",
        "especially", "often", "typically", "consisting", "served", "covered", "containing", "where", "when",
    }
)
KIND_WORDS = frozenset(
    {
        "any", "one", "several", "various", "numerous", "breed", "breeds", "kind", "kinds", "type", "types",
        "variety", "varieties", "form", "forms", "species", "member", "members", "group", "genus", "family",
        "sort", "piece", "pieces", "pair",
    }
)


def genus_words(definition: str) -> list[str]:
    """The words of a definition's genus phrase: "any of several breeds of large dogs" → [..., "dogs"]."""
    head = re.split(r"[;,:(]", definition, maxsplit=1)[0]
    out: list[str] = []
    for word in words(head):
        if word in GENUS_ENDS and not (word == "of" and out and out[-1] in KIND_WORDS):
            break
        out.append(word)
    return out


def word_forms(word: str) -> set[str]:
    """The word and its plausible singulars: dogs → dog, puppies → puppy, wolves → wolf, buses → bus."""
    forms = {word}
    if len(word) <= 3:
        return forms
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("ves"):
        forms.update({word[:-3] + "f", word[:-3] + "fe"})
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        forms.add(word[:-1])
    return forms


# --- text → concepts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConceptQuery:
    """A query as weighted concepts: ids (uint16, by decreasing weight) and weights (float32, best 1.0)."""

    ids: np.ndarray
    weights: np.ndarray
    text: str = ""

    @classmethod
    def of(cls, ids: Iterable[int], weights: Iterable[float], *, text: str = "") -> ConceptQuery:
        ids_arr = np.asarray(list(ids), dtype=np.int64)
        w = np.asarray(list(weights), dtype=np.float32)
        keep = w > 0
        ids_arr, w = ids_arr[keep], w[keep]
        order = np.argsort(-w, kind="stable")
        ids_arr, w = ids_arr[order], w[order]
        if len(w):
            w = w / w[0]
        return cls(ids_arr.astype(np.uint16), w.astype(np.float32), text)

    def __len__(self) -> int:
        return len(self.ids)

    def dense(self, count: int) -> np.ndarray:
        """The weights as a vector over all `count` concepts."""
        out = np.zeros(count, dtype=np.float32)
        out[self.ids.astype(np.int64)] = self.weights
        return out

    def top(self, n: int) -> ConceptQuery:
        return ConceptQuery(self.ids[:n], self.weights[:n], self.text)

    def describe(self, vocabulary: Vocabulary, n: int = 5) -> list[tuple[str, float]]:
        """The first `n` concepts as (name, weight), for messages and logs."""
        return [(vocabulary[int(i)].name, round(float(w), 3)) for i, w in zip(self.ids[:n], self.weights[:n], strict=True)]


@dataclass(frozen=True)
class LexicalWeights:
    """How much a word hit counts: in a lemma (the whole lemma, its head word, another word) and in the
    definition (its genus phrase, `genus_words`: "a breed of dog"; or elsewhere). A concept's
    lemma and definition hits add up; a concept's evidence is the mean over the query's words."""

    whole_lemma: float = 1.0
    lemma_head: float = 0.7
    lemma_word: float = 0.35
    definition_genus: float = 0.45
    definition_word: float = 0.15
    keep: float = 0.3  # concepts with evidence ≥ keep × the best one's count
    top: int = 50


class LexicalMatcher:
    """Query words → concepts by whole-word matches in lemmas and definitions (plural-insensitive)."""

    def __init__(self, vocabulary: Vocabulary, *, weights: LexicalWeights | None = None) -> None:
        self.vocabulary = vocabulary
        self.weights = weights or LexicalWeights()
        # word form → {concept id: (best lemma score, best definition score)}
        self.index: dict[str, dict[int, tuple[float, float]]] = {}
        self.lemmas: dict[tuple[str, ...], set[int]] = {}
        w = self.weights
        for concept in vocabulary.concepts:
            for lemma in concept.lemmas:
                tokens = words(lemma)
                if not tokens:
                    continue
                self.lemmas.setdefault(tuple(_singular(t) for t in tokens), set()).add(concept.id)
                for position, token in enumerate(tokens):
                    score = w.lemma_head if position == len(tokens) - 1 else w.lemma_word
                    self._add(token, concept.id, lemma=score)
            genus = set(genus_words(concept.definition))
            for token in words(concept.definition):
                if token not in STOPWORDS:
                    self._add(token, concept.id, definition=w.definition_genus if token in genus else w.definition_word)

    def _add(self, token: str, concept: int, *, lemma: float = 0.0, definition: float = 0.0) -> None:
        for form in word_forms(token):
            hits = self.index.setdefault(form, {})
            old_lemma, old_definition = hits.get(concept, (0.0, 0.0))
            hits[concept] = (max(old_lemma, lemma), max(old_definition, definition))

    def hits(self, word: str) -> dict[int, float]:
        """Concepts the word (any of its forms) occurs in, with its lemma + definition score in each."""
        best: dict[int, tuple[float, float]] = {}
        for form in word_forms(word):
            for concept, (lemma, definition) in self.index.get(form, {}).items():
                old_lemma, old_definition = best.get(concept, (0.0, 0.0))
                best[concept] = (max(old_lemma, lemma), max(old_definition, definition))
        return {concept: lemma + definition for concept, (lemma, definition) in best.items()}

    def unmatched(self, text: str) -> list[str]:
        """The query's content words that occur in no lemma and no definition."""
        return [w for w in content_words(text) if not self.hits(w)]

    def strongest(self, text: str) -> float:
        """The best single-word hit of the query (lemma + definition score; 0: no word matched)."""
        return max((max(self.hits(w).values(), default=0.0) for w in content_words(text)), default=0.0)

    def evidence(self, text: str) -> np.ndarray:
        """Each concept's lexical evidence for the query (dense, float32; 0: no word of it matched)."""
        out = np.zeros(len(self.vocabulary), dtype=np.float32)
        query = content_words(text)
        if not query:
            return out
        for word in query:
            for concept, score in self.hits(word).items():
                out[concept] += score
        # A lemma equal to the whole query (after singulars) counts as a full hit of every word.
        for concept in self.lemmas.get(tuple(_singular(w) for w in query), ()):
            out[concept] += self.weights.whole_lemma * len(query)
        return out / len(query)

    def match(self, text: str) -> ConceptQuery:
        """The concepts with the most evidence (raises NoConceptMatches when no word matches)."""
        query = content_words(text)
        evidence = self.evidence(text)
        if not query or evidence.max() <= 0:
            raise NoConceptMatches(query)
        return select(evidence, keep=self.weights.keep, top=self.weights.top, text=text)


def select(weights: np.ndarray, *, keep: float, top: int, text: str = "") -> ConceptQuery:
    """The concepts of a dense weight vector worth querying: ≥ keep × the best, at most `top`."""
    ids = np.argsort(-weights, kind="stable")[:top]
    ids = ids[weights[ids] >= keep * float(weights[ids[0]])]
    ids = ids[weights[ids] > 0]
    return ConceptQuery.of(ids, weights[ids], text=text)


def _singular(word: str) -> str:
    """One canonical form for whole-lemma comparison (the shortest plausible singular)."""
    return min(word_forms(word), key=lambda f: (len(f), f))


# --- per-image concepts (stored at ingest) -----------------------------------------------------------------


@dataclass(frozen=True)
class TopConcepts:
    """Each image's top concepts: ids uint16 (n × k) and probabilities uint8 (n × k, p·255 rounded)."""

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.scores.nbytes)

    def probabilities(self) -> np.ndarray:
        return self.scores.astype(np.float32) / SCORE_SCALE

    def take(self, rows: np.ndarray | Sequence[int]) -> TopConcepts:
        return TopConcepts(self.ids[rows], self.scores[rows])

    @classmethod
    def none(cls, count: int, k: int = TOP_K) -> TopConcepts:
        """`count` rows without concepts (all-zero scores): what a row of a segment that stored none gets."""
        return cls(np.zeros((count, k), np.uint16), np.zeros((count, k), np.uint8))

    @classmethod
    def concat(cls, parts: Sequence[TopConcepts], k: int = TOP_K) -> TopConcepts:
        """Rows of several parts one after another; narrower parts are padded with "none" (zero scores)."""
        if not parts:
            return cls.none(0, k)
        width = max(p.ids.shape[1] for p in parts)
        padded = [p if p.ids.shape[1] == width else p.widened(width) for p in parts]
        return cls(np.concatenate([p.ids for p in padded]), np.concatenate([p.scores for p in padded]))

    def widened(self, width: int) -> TopConcepts:
        wider = TopConcepts.none(len(self), width)
        wider.ids[:, : self.ids.shape[1]] = self.ids
        wider.scores[:, : self.scores.shape[1]] = self.scores
        return wider

    def tags(self, row: int, names: Sequence[str], *, threshold: int = TAG_MIN_SCORE) -> tuple[tuple[str, float], ...]:
        """One row's (class name, probability) pairs scoring at least `threshold`, most probable first."""
        return tuple(
            (names[i], round(p / SCORE_SCALE, 3))
            for i, p in zip(self.ids[row].tolist(), self.scores[row].tolist(), strict=True)
            if p >= threshold and i < len(names)
        )

    def tagged(self, ids: Iterable[int], *, threshold: int = TAG_MIN_SCORE) -> np.ndarray:
        """Rows (bool mask) one of whose concepts scoring at least `threshold` is among `ids`."""
        wanted = np.isin(self.ids, np.fromiter(ids, dtype=np.int64))
        return np.asarray((wanted & (self.scores >= threshold)).any(axis=1), dtype=bool)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=-1, keepdims=True)


def top_concepts(logits: np.ndarray, k: int = TOP_K) -> TopConcepts:
    """The k most probable classes per row of `logits` (n × classes), as stored per image."""
    probabilities = softmax(logits)
    ids = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(probabilities, ids, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    return TopConcepts(ids.astype(np.uint16), np.rint(picked * SCORE_SCALE).astype(np.uint8))


def concept_scores(stored: TopConcepts, query: ConceptQuery) -> np.ndarray:
    """Each image's score for the query: Σ over its stored concepts of weight × probability (n, float32).

    The expected query weight of the image's class; 0 when none of its top concepts is in the query.
    """
    count = int(max(int(stored.ids.max(initial=0)), int(query.ids.max(initial=0)))) + 1
    dense = query.dense(count)
    return (dense[stored.ids.astype(np.int64)] * stored.probabilities()).sum(axis=1)


def class_scores(probabilities: np.ndarray, query: ConceptQuery) -> np.ndarray:
    """The same score from full class probabilities (n × classes): probabilities @ weights."""
    return np.asarray(probabilities, dtype=np.float32) @ query.dense(probabilities.shape[1])


# --- concept directions in the feature space ------------------------------------------------------------------


TEMPERATURE = 15.0  # unit vectors × this ≈ the features' logit scale (their norms are 22 ± 3 on photos)


class ConceptHead:
    """The classifier (weight classes × dim, bias): each row is a concept's direction in the feature space.

    Works on the stored unit vectors alone, so also on indexes made before concepts were stored.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.units = self.weight / np.linalg.norm(self.weight, axis=1, keepdims=True)

    @classmethod
    def load(cls, model_dir: Path, spec: ModelSpec) -> ConceptHead:
        if spec.concepts is None or not spec.concepts.head_file:
            raise ModelNotFound(f"the model {spec.name} ships no classifier head: rebuild with `imgsearch build-model`")
        with np.load(Path(model_dir) / spec.concepts.head_file) as data:
            head = cls(data["weight"], data["bias"])
        if head.weight.shape != (spec.concepts.count, spec.output_dim):
            raise ModelNotFound(
                f"{spec.concepts.head_file} is {head.weight.shape}, not {spec.concepts.count} × {spec.output_dim}"
            )
        return head

    def direction(self, query: ConceptQuery) -> np.ndarray:
        """One unit vector for the query (its concepts' unit directions, weighted and summed): search an
        index with it like an image's vector. Best for few concepts; `scores` ranks better."""
        ids = query.ids.astype(np.int64)
        vector = (query.weights[:, None] * self.units[ids]).sum(axis=0)
        return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)

    def cosines(self, vectors: np.ndarray, query: ConceptQuery) -> np.ndarray:
        """Each image's dot product with `direction(query)` (vectors: n × dim, unit rows)."""
        return np.asarray(vectors, dtype=np.float32) @ self.direction(query)

    def scores(self, vectors: np.ndarray, query: ConceptQuery, *, temperature: float = TEMPERATURE) -> np.ndarray:
        """Each image's log Σ_c weight_c · exp(logit_c), the logits recomputed from its unit vector as
        temperature · (v · weight_c) + bias_c: one dot product per image and query concept."""
        ids = query.ids.astype(np.int64)
        logits = temperature * (np.asarray(vectors, dtype=np.float32) @ self.weight[ids].T) + self.bias[ids]
        top = logits.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(logits - top) @ query.weights.astype(np.float32))

    def projected(self, mean: np.ndarray, back: np.ndarray | None) -> ConceptHead:
        """The head for vectors stored through a linear encoder: unit rows y of (v − mean) @ projection, mapped
        back by `back` (an `imgsearch.encode.Encoder`'s `mean` and `back`; None: the vectors are the embeddings).

        v ≈ mean + r·(y @ back) with y the stored unit row and r ≈ √(1 − |mean|²) (unit v, E[v] = mean), so
        v · w ≈ y · (r·back·w) + mean · w: the weight becomes r·W·backᵀ and the bias b + T·(W·mean). For a
        PCA encoder back is the projection's transpose.
        """
        if back is None:
            return self
        mean = np.asarray(mean, dtype=np.float32)
        weight = spread(mean) * (self.weight @ np.asarray(back, dtype=np.float32).T)
        return ConceptHead(weight, self.bias + TEMPERATURE * (self.weight @ mean))


TEXT_WEIGHTS = (0.5, 1.0)  # text_scores: stored top concepts, concept logits from the vectors


def text_scores(
    query: ConceptQuery,
    *,
    stored: TopConcepts | None = None,
    vectors: np.ndarray | None = None,
    head: ConceptHead | None = None,
) -> np.ndarray:
    """The chosen ranking of images for a concept query: 0.5 × stored top concepts + 1.0 × directions
    (each min–max scaled over the images given); either alone when only it is available."""
    parts, weights = [], []
    if stored is not None:
        parts.append(concept_scores(stored, query))
        weights.append(TEXT_WEIGHTS[0])
    if vectors is not None and head is not None:
        parts.append(head.scores(vectors, query))
        weights.append(TEXT_WEIGHTS[1])
    if not parts:
        raise BadParameter("text_scores needs stored concepts, or vectors and the concept head")
    return parts[0] if len(parts) == 1 else fuse_scores(parts, weights)


IMAGE_TEXT_WEIGHT = 4.0


def image_text_vector(image: np.ndarray, text: np.ndarray, *, weight: float = IMAGE_TEXT_WEIGHT) -> np.ndarray:
    """"Like this image, but <text>": one unit vector, image + weight × text (both unit vectors in the
    image space: a stored or query image vector, and `TextSearch.text_vector`). Search with it as with
    an image's vector. On Corel-1k, weight 4 puts the named class first (P@10 0.979) while keeping more
    of the image's look than the text alone (docs/TEXT-SEARCH.md)."""
    vector = np.asarray(image, dtype=np.float32) + weight * np.asarray(text, dtype=np.float32)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def fuse_scores(parts: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted sum of score vectors, each min–max scaled to [0, 1] first."""
    weights = list(weights) if weights is not None else [1.0] * len(parts)
    total = np.zeros(len(parts[0]), dtype=np.float32)
    for part, weight in zip(parts, weights, strict=True):
        part = np.asarray(part, dtype=np.float32)
        low, high = float(part.min()), float(part.max())
        total += weight * ((part - low) / (high - low) if high > low else np.zeros_like(part))
    return total
