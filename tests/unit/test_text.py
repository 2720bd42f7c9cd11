"""Text → concepts with the sentence model, and text → image vectors with a bring-your-own image–text pair."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.concepts import ConceptHead, NoConceptMatches
from imgsearch.embed import Embedder
from imgsearch.errors import ModelNotFound
from imgsearch.modelspec import MANIFEST_NAME, ModelSpec, TextSpec, default_model_dir, sha256_file
from imgsearch.text import TextEncoder, TextSearch

DOG_BREEDS = range(151, 269)


@pytest.fixture(scope="module")
def search() -> TextSearch:
    pytest.importorskip("tokenizers", reason="the text extra (tokenizers) is not installed")
    try:
        spec = ModelSpec.load(default_model_dir())
    except ModelNotFound as error:
        pytest.skip(f"the default model is not built ({error}): run `imgsearch build-model`")
    if spec.text is None or spec.concepts is None:
        pytest.skip("the default model has no text encoder: rebuild it with `imgsearch build-model`")
    return TextSearch(spec, default_model_dir(), threads=2)


# --- the sentence model (all-MiniLM-L6-v2, int8) ---------------------------------------------------------


def test_sentence_model_maps_puppy_to_dog_classes(search: TextSearch) -> None:
    """No lemma or definition says "puppy" of a dog (only of the axolotl, "mud puppy"): the sentence
    model bridges it."""
    query = search.concepts("puppy", mode="sentence")
    top = [int(i) for i in query.ids[:10]]
    assert sum(i in DOG_BREEDS for i in top) >= 8, query.describe(search.vocabulary, 10)  # type: ignore[arg-type]
    fused = search.concepts("puppy")
    assert int(fused.ids[0]) in DOG_BREEDS


def test_fused_matcher_maps_words_to_their_classes(search: TextSearch) -> None:
    names = search.vocabulary.names  # type: ignore[union-attr]
    dogs = [int(i) for i in search.concepts("dogs").ids[:20]]
    assert sum(i in DOG_BREEDS for i in dogs) >= 15 and names.index("hotdog") not in dogs
    assert names[int(search.concepts("a sandy beach").ids[0])] in ("seashore", "sandbar")
    assert names[int(search.concepts("school bus").ids[0])] == "school bus"
    assert {names[int(i)] for i in search.concepts("elephants").ids[:2]} == {"African elephant", "Indian elephant"}


def test_unknown_words_are_rejected_naming_them(search: TextSearch) -> None:
    for mode in ("fused", "sentence", "lexical"):
        with pytest.raises(NoConceptMatches, match="no concept matches 'xyzzy'"):
            search.concepts("xyzzy", mode=mode)
    with pytest.raises(NoConceptMatches, match="'blorft', 'zindle'") as caught:
        search.concepts("blorft zindle")
    assert caught.value.best is not None and caught.value.best < 0.4
    with pytest.raises(ValueError, match="mode"):
        search.concepts("dog", mode="psychic")


def test_text_vector_points_at_the_concepts_in_the_image_space(search: TextSearch) -> None:
    head = search.head
    assert isinstance(head, ConceptHead)
    vector = search.text_vector("dogs")
    assert vector.shape == (1280,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    candidates = head.units[[207, 978, 779]]  # golden retriever, seashore, school bus
    assert int(np.argmax(candidates @ vector)) == 0
    assert int(np.argmax(candidates @ search.text_vector("beach"))) == 1


def test_encoder_vectors_do_not_depend_on_batch_padding(search: TextSearch) -> None:
    encoder = search.encoder
    assert isinstance(encoder, TextEncoder)
    ids, mask = encoder.tokens(["dog", "a much longer sentence about a dog on a beach"])
    assert ids.shape == mask.shape and ids.dtype == np.int64 and mask[0].sum() == 3  # [CLS] dog [SEP]
    alone = encoder.encode(["dog"])[0]
    batched = encoder.encode(["a much longer sentence about a dog on a beach", "dog"])[1]
    np.testing.assert_allclose(batched, alone, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(encoder.encode(["x", "y z"]), axis=1), 1.0, atol=1e-5)


# --- bring your own image–text pair -----------------------------------------------------------------------

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
DIM = 4


def image_graph(mixing: np.ndarray) -> bytes:
    """image (N×3×H×W) → mean colour → × mixing (3 × DIM): a tiny "image encoder"."""
    onnx = pytest.importorskip("onnx", reason="the build extra (onnx) is not installed")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "mixing"], ["embedding"]),
        ],
        "tiny-image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        [numpy_helper.from_array(mixing.astype(np.float32), "mixing")],
    )
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def text_graph(table: np.ndarray) -> bytes:
    """input_ids, attention_mask (batch × tokens) → masked mean of table rows: a tiny "text encoder"."""
    onnx = pytest.importorskip("onnx", reason="the build extra (onnx) is not installed")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "tokens_axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "tokens_axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        [
            numpy_helper.from_array(table.astype(np.float32), "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "tokens_axis"),
        ],
    )
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Path:
    """A model folder holding a tiny image encoder, a text encoder into the same 4-d space, a WordLevel
    tokenizer.json, and the manifest that describes the pair."""
    tokenizers = pytest.importorskip("tokenizers", reason="the text extra (tokenizers) is not installed")
    folder = tmp_path_factory.mktemp("pair")
    mixing = np.random.default_rng(0).standard_normal((3, DIM))
    # Preprocessing maps a pure colour to ±1 per channel (pixel_scale 255, mean 0.5, std 0.5).
    words = ["[PAD]", "[UNK]", *COLOURS]
    table = np.zeros((len(words), DIM))
    for row, name in enumerate(COLOURS, start=2):
        table[row] = (np.array(COLOURS[name]) / 127.5 - 1.0) @ mixing
    (folder / "image.onnx").write_bytes(image_graph(mixing))
    (folder / "text.onnx").write_bytes(text_graph(table))

    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = tokenizers.normalizers.Lowercase()
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))

    manifest = {
        "name": "tiny-pair",
        "onnx_file": "image.onnx",
        "sha256": sha256_file(folder / "image.onnx"),
        "input_name": "image",
        "input_size": 32,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "pixel_scale": 255.0,
        "resize": "squash",
        "crop_ratio": 1.0,
        "output_name": "embedding",
        "output_dim": DIM,
        "opset": 17,
        "text": {
            "name": "tiny-pair-text",
            "onnx_file": "text.onnx",
            "sha256": sha256_file(folder / "text.onnx"),
            "tokenizer_file": "tokenizer.json",
            "tokenizer_sha256": sha256_file(folder / "tokenizer.json"),
            "dim": DIM,
            "space": "image",
            "max_length": 16,
        },
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return folder


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_text_pair_embeds_text_into_the_image_space(pair: Path) -> None:
    spec = ModelSpec.load(pair)
    assert spec.text == TextSpec(**{**json.loads((pair / MANIFEST_NAME).read_text())["text"]})
    assert spec.intact(pair)
    search = TextSearch.load(pair)
    assert search.in_image_space and search.vocabulary is None

    embedder = Embedder.load(pair, threads=1)
    vectors, failures = embedder.embed_bytes([png(c) for c in COLOURS.values()])
    assert failures == [] and vectors.shape == (3, DIM)
    for row, name in enumerate(COLOURS):
        for text in (name, name.upper(), f"a {name} square"):  # unknown words pool as zeros
            vector = search.text_vector(text)
            assert vector.shape == (DIM,) and int(np.argmax(vectors @ vector)) == row, text
            np.testing.assert_allclose(vectors[row] @ vector, 1.0, atol=1e-4)
    with pytest.raises(ModelNotFound, match="no concept vocabulary"):
        search.concepts("red")


def test_a_pair_whose_dimensions_differ_is_refused(pair: Path, tmp_path: Path) -> None:
    manifest = json.loads((pair / MANIFEST_NAME).read_text())
    manifest["text"]["dim"] = DIM + 1
    for name in ("image.onnx", "text.onnx", "tokenizer.json"):
        (tmp_path / name).write_bytes((pair / name).read_bytes())
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelNotFound, match="must give 4-d vectors"):
        ModelSpec.load(tmp_path)
    manifest["text"].update(dim=DIM, space="words")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelNotFound, match="text space 'words'"):
        ModelSpec.load(tmp_path)
