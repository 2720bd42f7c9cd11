"""Concepts: the export's second output, per-image top concepts, the lexical matcher, ranking images by
concepts, and the manifest's compatibility with indexes made before concepts existed."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.concepts import (
    Concept,
    ConceptHead,
    ConceptQuery,
    LexicalMatcher,
    NoConceptMatches,
    TopConcepts,
    Vocabulary,
    class_scores,
    concept_scores,
    content_words,
    image_text_vector,
    softmax,
    text_scores,
    top_concepts,
    word_forms,
)
from imgsearch.embed import Embedder
from imgsearch.errors import BadParameter, ModelNotFound
from imgsearch.modelspec import MANIFEST_NAME, ModelSpec, default_model_dir, sha256_file

THREADS = 2
DOG_BREEDS = range(151, 269)  # ImageNet's dog classes: Chihuahua … Mexican hairless


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    folder = default_model_dir()
    try:
        spec = ModelSpec.load(folder)
    except ModelNotFound as error:
        pytest.skip(f"the default model is not built ({error}): run `imgsearch build-model`")
    if spec.concepts is None:
        pytest.skip("the default model has no concepts: rebuild it with `imgsearch build-model`")
    return folder


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Embedder.load(model_dir, threads=THREADS, batch_size=4)


@pytest.fixture(scope="module")
def vocabulary(model_dir: Path) -> Vocabulary:
    return Vocabulary.load(model_dir, ModelSpec.load(model_dir))


@pytest.fixture(scope="module")
def lexical(vocabulary: Vocabulary) -> LexicalMatcher:
    return LexicalMatcher(vocabulary)


def photo(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 40, (120, 160, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


TINY = Vocabulary(
    [
        Concept(0, "n0", ("golden retriever",), "an English breed of dog having a long silky golden coat"),
        Concept(1, "n1", ("hotdog", "hot dog"), "a frankfurter served hot on a bun"),
        Concept(2, "n2", ("tabby", "tabby cat"), "a cat with a grey or tawny coat mottled with black"),
        Concept(3, "n3", ("seashore", "coast"), "the shore of a sea or ocean"),
        Concept(4, "n4", ("wolf",), "any of various predatory carnivorous canines"),
        Concept(5, "n5", ("Maltese dog", "Maltese"), "a breed of toy dogs having a long straight silky white coat"),
    ]
)


# --- words and the lexical matcher ----------------------------------------------------------------------


def test_word_forms_give_plausible_singulars() -> None:
    assert {"dog"} <= word_forms("dogs")
    assert "puppy" in word_forms("puppies")
    assert "wolf" in word_forms("wolves")
    assert "bus" in word_forms("buses")
    assert word_forms("glass") == {"glass"} and word_forms("bus") == {"bus"}
    assert content_words("A photo of the mountains and snow") == ["mountains", "snow"]
    assert content_words("Café, lady's slipper!") == ["cafe", "lady", "slipper"]


def test_lexical_favours_lemma_hits_over_definition_hits() -> None:
    """GIVEN "dogs": "dog" in a lemma and the definition (Maltese dog) beats a lemma alone (hot dog), which
    beats the definition alone (golden retriever); the cat and the coast do not match."""
    query = LexicalMatcher(TINY).match("dogs")
    assert query.ids.tolist() == [5, 1, 0]
    assert query.weights[0] == 1.0 and query.weights[0] > query.weights[1] > query.weights[2] > 0
    whole = LexicalMatcher(TINY).match("Tabby Cat")
    assert whole.ids[0] == 2 and len(whole) == 1


def test_lexical_rejects_unknown_words_naming_them() -> None:
    with pytest.raises(NoConceptMatches, match="no concept matches 'xyzzy'") as caught:
        LexicalMatcher(TINY).match("xyzzy")
    assert caught.value.words == ["xyzzy"]
    with pytest.raises(NoConceptMatches, match="an empty query"):
        LexicalMatcher(TINY).match("the of a")
    assert LexicalMatcher(TINY).unmatched("sea blorft") == ["blorft"]


def test_lexical_maps_dogs_to_dog_classes_on_the_imagenet_vocabulary(lexical: LexicalMatcher, vocabulary) -> None:
    assert len(vocabulary) == 1000 and vocabulary[207].name == "golden retriever"
    query = lexical.match("dogs")
    breeds = sum(int(i) in DOG_BREEDS for i in query.ids)
    assert breeds >= 25 and breeds >= 0.8 * len(query), query.describe(vocabulary, 40)
    assert all(int(i) in DOG_BREEDS for i in query.ids[:3])
    hotdog = query.dense(1000)[934]
    assert vocabulary[934].name == "hotdog" and hotdog < query.weights[0]
    assert lexical.match("elephants").describe(vocabulary, 2)[0][0] in ("African elephant", "Indian elephant")
    assert lexical.match("school bus").ids[0] == 779
    with pytest.raises(NoConceptMatches, match="'xyzzy'"):
        lexical.match("xyzzy")


# --- per-image concepts and ranking ---------------------------------------------------------------------


def test_top_concepts_keep_the_most_probable_classes_in_a_few_bytes() -> None:
    logits = np.full((3, 1000), -5.0, dtype=np.float32)
    logits[0, [7, 300, 999]] = [9.0, 8.0, 7.0]
    logits[1, 42] = 12.0
    stored = top_concepts(logits, k=5)
    assert stored.ids.dtype == np.uint16 and stored.scores.dtype == np.uint8
    assert stored.ids.shape == stored.scores.shape == (3, 5)
    assert stored.nbytes // len(stored) == 15
    assert stored.ids[0, :3].tolist() == [7, 300, 999]
    assert stored.ids[1, 0] == 42 and stored.scores[1, 0] == 255
    probabilities = softmax(logits)
    np.testing.assert_allclose(stored.probabilities()[0, :3], probabilities[0, [7, 300, 999]], atol=1 / 255)
    assert (np.diff(stored.scores.astype(int), axis=1) <= 0).all()


def test_images_whose_concepts_match_rank_first() -> None:
    """GIVEN three images whose top concept is a dog, a cat, a beach; WHEN querying dog-ish concepts
    THEN the dog image ranks first by stored concepts, full class scores and directions alike."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((1000, 64)).astype(np.float32)
    head = ConceptHead(weight, np.zeros(1000, np.float32))
    vectors = head.units[[207, 281, 978]] + 0.05 * rng.standard_normal((3, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    logits = 20 * vectors @ weight.T
    stored = top_concepts(logits)
    query = ConceptQuery.of([207, 208, 151], [1.0, 0.8, 0.5], text="dog")

    for scores in (
        concept_scores(stored, query),
        class_scores(softmax(logits), query),
        head.scores(vectors, query),
        head.cosines(vectors, query),
        text_scores(query, stored=stored, vectors=vectors, head=head),
        text_scores(query, stored=stored),
    ):
        assert int(np.argmax(scores)) == 0, scores
    beach = ConceptQuery.of([978], [1.0])
    assert int(np.argmax(text_scores(beach, vectors=vectors, head=head))) == 2
    np.testing.assert_allclose(np.linalg.norm(head.direction(query)), 1.0, rtol=1e-5)
    with pytest.raises(BadParameter, match="needs stored concepts"):
        text_scores(query)


def test_image_plus_text_moves_towards_the_named_concept() -> None:
    rng = np.random.default_rng(1)
    head = ConceptHead(rng.standard_normal((1000, 64)).astype(np.float32), np.zeros(1000, np.float32))
    dog, beach = head.units[207], head.units[978]
    dog_on_beach = (dog + beach) / np.linalg.norm(dog + beach)
    database = np.stack([dog, beach, dog_on_beach])
    vector = image_text_vector(dog, head.direction(ConceptQuery.of([978], [1.0])), weight=1.0)
    assert int(np.argmax(database[1:] @ vector)) + 1 == 2  # the dog on the beach, not the bare beach
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_concept_query_is_sorted_and_scaled() -> None:
    query = ConceptQuery.of([5, 9, 3, 4], [0.2, 0.8, 0.0, 0.4], text="x")
    assert query.ids.tolist() == [9, 4, 5] and query.ids.dtype == np.uint16
    np.testing.assert_allclose(query.weights, [1.0, 0.5, 0.25])
    assert query.dense(10)[[9, 4, 5, 3]].tolist() == [1.0, 0.5, 0.25, 0.0]
    assert len(TopConcepts.concat([])) == 0


# --- the real export: two outputs, one pass, features unchanged ----------------------------------------


def features_only(model_path: Path) -> bytes:
    """The ONNX file without what build-model appends (the classifier node, output, weights, metadata)."""
    onnx = pytest.importorskip("onnx", reason="the build extra (onnx) is not installed")
    model = onnx.load(str(model_path))
    graph = model.graph
    keep_nodes = [n for n in graph.node if n.op_type != "Gemm" or "logits" not in n.output]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    keep_outputs = [o for o in graph.output if o.name != "logits"]
    del graph.output[:]
    graph.output.extend(keep_outputs)
    keep_weights = [t for t in graph.initializer if not t.name.startswith("classifier.")]
    del graph.initializer[:]
    graph.initializer.extend(keep_weights)
    del model.metadata_props[:]
    return model.SerializeToString()


def test_export_has_both_outputs_and_the_features_graph_is_the_old_export(model_dir: Path, tmp_path) -> None:
    """The file is the features-only export plus the head: stripping the head gives back the bytes whose
    checksum is the manifest's sha256 (what indexes record), and ONNX Runtime gives identical features."""
    import onnxruntime as ort

    spec = ModelSpec.load(model_dir)
    session = ort.InferenceSession(str(model_dir / spec.onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["features", "logits"]
    assert session.get_outputs()[1].shape[1] == spec.concepts.count == 1000
    assert session.get_modelmeta().custom_metadata_map["imgsearch.features_sha256"] == spec.sha256
    assert spec.file_sha256 == sha256_file(model_dir / spec.onnx_file) != spec.sha256

    old = tmp_path / "features-only.onnx"
    old.write_bytes(features_only(model_dir / spec.onnx_file))
    assert sha256_file(old) == spec.sha256

    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((3, 3, spec.input_size, spec.input_size)).astype(np.float32)
    (before,) = ort.InferenceSession(str(old), providers=["CPUExecutionProvider"]).run(["features"], {"pixels": pixels})
    features, logits = session.run(["features", "logits"], {"pixels": pixels})
    np.testing.assert_array_equal(features, before)
    with np.load(model_dir / spec.concepts.head_file) as head:
        np.testing.assert_allclose(logits, features @ head["weight"].T + head["bias"], rtol=1e-4, atol=1e-3)


def test_embedder_gives_concepts_from_the_same_pass(embedder: Embedder) -> None:
    images = [photo((200, 30, 30), 0), photo((30, 200, 30), 1), b"not an image", photo((30, 30, 200), 2)]
    vectors, failures, done = embedder.embed_stream(lambda i: images[i], len(images))
    result = embedder.embed_all(lambda i: images[i], len(images))
    assert embedder.has_concepts
    assert done == result.indices == [0, 1, 3] and [f.index for f in failures] == [2]
    np.testing.assert_array_equal(result.vectors, vectors)
    assert result.concepts is not None and result.concepts.ids.shape == (3, 5)

    batch = [embedder.pixels(images[i]) for i in done]
    again, logits = embedder.run_concepts(batch)
    np.testing.assert_array_equal(again, embedder.run(batch))
    expected = top_concepts(logits)
    np.testing.assert_array_equal(result.concepts.ids, expected.ids)
    assert embedder.embed_all(lambda i: images[i], 2, concepts=False).concepts is None


def test_embedder_without_concepts_keeps_working(embedder: Embedder, model_dir: Path) -> None:
    """A manifest with no concepts section (a model from before, or another model) embeds as it did."""
    spec = dataclasses.replace(embedder.spec, concepts=None, text=None)
    plain = Embedder(spec, model_dir, threads=1)
    assert not plain.has_concepts
    result = plain.embed_all(lambda i: photo((90, 90, 90), 3), 1)
    assert result.concepts is None and result.vectors.shape == (1, 1280)
    with pytest.raises(ModelNotFound, match="no class-score output"):
        plain.run_concepts([plain.pixels(photo((90, 90, 90), 3))])


def test_a_folder_with_only_the_onnx_file_still_embeds_with_concepts(model_dir: Path, tmp_path) -> None:
    """What the Lambda model layer copies today (model.json + the ONNX file): ingest keeps working, with
    concepts; text search says which files it lacks."""
    from imgsearch.text import TextSearch

    spec = ModelSpec.load(model_dir)
    for name in (MANIFEST_NAME, spec.onnx_file):
        (tmp_path / name).symlink_to(model_dir / name)
    assert set(spec.missing(tmp_path)) == set(spec.files()) - {spec.onnx_file}
    embedder = Embedder.load(tmp_path, threads=1)
    assert embedder.embed_all(lambda i: photo((10, 120, 200), 4), 1).concepts is not None
    with pytest.raises(ModelNotFound, match=r"text search needs concepts\.json"):
        TextSearch.load(tmp_path)


def test_an_index_of_the_old_export_opens_with_the_new_model(model_dir: Path, tmp_path) -> None:
    """Indexes record model_info(spec): the features-only manifest of before and today's compare equal."""
    from imgsearch.index import ImageIndex, check_model, model_info

    spec = ModelSpec.load(model_dir)
    old = dataclasses.replace(spec, file_sha256="", concepts=None, text=None, source="")
    assert old.fingerprint == spec.fingerprint and model_info(old) == model_info(spec)
    index = ImageIndex.open(str(tmp_path / "index"))
    index.ensure(old, bits=64)
    check_model(index.manifest(), spec)  # raises ModelMismatch if the new export were refused
    index.ensure(spec, bits=64)


def test_old_manifest_without_new_fields_loads(model_dir: Path, tmp_path) -> None:
    spec = ModelSpec.load(model_dir)
    raw = json.loads((model_dir / MANIFEST_NAME).read_text())
    for key in ("concepts", "text", "file_sha256"):
        raw.pop(key, None)
    raw["sha256"] = spec.sha256
    (tmp_path / spec.onnx_file).symlink_to(model_dir / spec.onnx_file)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    loaded = ModelSpec.load(tmp_path)
    assert loaded.concepts is None and loaded.text is None and loaded.checksum == spec.sha256
    assert loaded.fingerprint == spec.fingerprint


# --- build-model: every part, rebuilt only when stale ---------------------------------------------------


def test_build_is_idempotent_and_rebuilds_only_the_damaged_part(model_dir: Path, tmp_path) -> None:
    """A copy of the built model is up to date; damaging the text part rebuilds that part only."""
    pytest.importorskip("torch", reason="the build extra is not installed")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the build extra is not installed")
    from imgsearch.build_model import build_model, current_source, is_current

    spec = ModelSpec.load(model_dir)
    if spec.source != current_source(input_size=spec.input_size, resize=spec.resize):
        pytest.skip("the default model was built by another recipe: run `imgsearch build-model`")
    folder = tmp_path / "model"
    folder.mkdir()
    for name in [MANIFEST_NAME, *spec.files()]:
        (folder / name).write_bytes((model_dir / name).read_bytes())
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST_NAME, *spec.files()])
    assert spec.text is not None and spec.concepts is not None

    again, rebuilt = build_model(folder, input_size=spec.input_size, resize=spec.resize)
    assert not rebuilt and again == spec and is_current(folder, spec.source)

    image_time = (folder / spec.onnx_file).stat().st_mtime_ns
    with open(folder / spec.text.concept_vectors_file, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\1\2\3")
    assert not is_current(folder, spec.source)
    repaired, rebuilt = build_model(folder, input_size=spec.input_size, resize=spec.resize)
    assert rebuilt and repaired == spec and spec.intact(folder)  # the export is deterministic
    assert (folder / spec.onnx_file).stat().st_mtime_ns == image_time  # the image model was kept
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST_NAME, *spec.files()])
