"""The query API's contract: typed, annotated query parameters and the JSON body of POST /search.

Powertools validates requests against these (`enable_validation`) and generates the OpenAPI document from
them (served at GET /openapi.json; scripts/openapi.py writes docs/openapi.yaml). Every bound is one of the
core's constants (imgsearch.options), so the contract, the core's checks and the CLI agree.
"""

from typing import TYPE_CHECKING, Annotated, Literal, Self

from aws_lambda_powertools.event_handler.openapi.params import Path as InPath
from aws_lambda_powertools.event_handler.openapi.params import Query as InQuery
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from imgsearch.errors import BadParameter
from imgsearch.options import (
    DUPLICATE_RADIUS,
    MAX_EXPAND,
    MAX_OFFSET,
    MAX_PREFIX_CHARS,
    MAX_TAG_CHARS,
    MAX_TEXT_CHARS,
    MIN_SCORE_RANGE,
    checked_text,
)
from imgsearch.search import MAX_K, METRICS

low_score, high_score = MIN_SCORE_RANGE
if TYPE_CHECKING:
    MetricName = str
else:
    MetricName = Literal.__getitem__(METRICS)  # an enum of the core's metric names in the contract
K = Annotated[
    int | None,
    InQuery(ge=1, le=MAX_K, description="results wanted (ASCII digits); default: the function's DEFAULT_K (10)"),
]
Metric = Annotated[
    MetricName | None,
    InQuery(
        description="how to rank; default: the stack's defaultMetric (hybrid). On the s3vectors index backend "
        "hybrid ranks by cosine and hamming is a 400 `bad_parameter` (that backend keeps no binary codes)"
    ),
]
MinScore = Annotated[
    float | None,
    InQuery(
        ge=low_score,
        le=high_score,
        description=f"drop results scoring lower (scores are in [{low_score:g}, {high_score:g}]; a finite decimal number)",
    ),
]
Prefix = Annotated[
    str | None,
    InQuery(max_length=MAX_PREFIX_CHARS, description="only keys starting with this (empty means no prefix)"),
]
Tag = Annotated[
    str | None,
    InQuery(
        max_length=MAX_TAG_CHARS,
        description="only images whose stored top concepts include this ImageNet class name (e.g. `tabby`, "
        "`golden retriever`; case-insensitive, `_` as a space); an unknown name is a 400 `bad_parameter`. "
        "Not on the s3vectors backend (400)",
    ),
]
Offset = Annotated[
    int | None,
    InQuery(
        ge=0,
        le=MAX_OFFSET,
        description=f"skip this many results (paging); at most {MAX_OFFSET} so that a query's work stays bounded. "
        "On the s3vectors index backend offset + k is at most 100 (S3 Vectors' top-K limit); more is a 400 "
        "`bad_parameter`",
    ),
]
Expand = Annotated[
    int | None,
    InQuery(
        ge=0,
        le=MAX_EXPAND,
        description="re-ranking of image and key queries over their first `expand` hits (default 10 on the segment "
        "index backend, off on s3vectors; 0: off): rank once, move the query toward its first `expand` hits (each "
        "weighted by its score cubed) three times, re-ordering the first 10 × k hits (up to 1,000), then order those "
        "by diffusion over their own neighbour graph (segments only; hamming re-ranks by the moved query's code "
        "alone). Near-copies of the query stay first. Scores stay the query's own similarity, so `min_score` means "
        "what it does without re-ranking, but they no longer fall down the list. Corel-1k mAP@100 0.913 → 0.960 and "
        "CIFAR-10 mAP@1000 0.619 → 0.6505 (docs/BENCHMARKS.md, \"Re-ranking\"). On s3vectors it searches again "
        "instead (two more requests). Words are expanded only when asked, alone never",
    ),
]
Expires = Annotated[
    int | None,
    InQuery(
        ge=1,
        description="seconds the result URLs stay valid, from 1 to the deployment's maximum (PRESIGN_SECONDS, 900 by "
        "default: the stack's presignSeconds); more is a 400 `bad_parameter`. Default: that maximum",
    ),
]
Collapse = Annotated[
    bool | None,
    InQuery(
        description=f"`true`: keep only the best of each set of near-copies (binary codes within "
        f"{DUPLICATE_RADIUS:.0%} of their bits, imgsearch.options.DUPLICATE_RADIUS; docs/BENCHMARKS.md "
        "\"Duplicates\"); default false. Not on the s3vectors backend (400)"
    ),
]
WORDS = f"the words to search for, e.g. q=dog+on+a+beach (not blank, at most {MAX_TEXT_CHARS} characters)"
Words = Annotated[
    str,
    InQuery(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description=f"{WORDS}; words that match no concept are a 400 `no_concept_match`",
    ),
]
MoreWords = Annotated[
    str | None,
    InQuery(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description=f"{WORDS}, beside the image or key: \"like this, but <words>\" (the image's vector plus 4 × the "
        "words' concept direction, docs/TEXT-SEARCH.md); a 400 `bad_parameter` beside a JSON body that has `text` too",
    ),
]
SimilarKey = Annotated[
    str,
    InPath(
        min_length=1,
        description="an indexed object key; it may contain slashes (API Gateway's greedy path variable {key+})",
    ),
]


class SearchBody(BaseModel):
    """POST /search as JSON: an image (base64) or an indexed key, and/or words; nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: Annotated[str, Field(description="base64 of the image file", json_schema_extra={"format": "byte"})] | None = (
        None
    )
    key: Annotated[str, Field(min_length=1, description="an object key in the images bucket that is indexed")] | None = (
        None
    )
    text: (
        Annotated[
            str,
            BeforeValidator(checked_text),  # the core's check and message (it raises BadParameter, a 400)
            Field(min_length=1, max_length=MAX_TEXT_CHARS, description=f"words to search for, e.g. \"dog on a beach\" (not blank, at most {MAX_TEXT_CHARS} characters)"),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def one_query(self) -> Self:
        if self.image is not None and self.key is not None:
            raise BadParameter('the JSON body must have one of "image" (base64) or "key", not both')
        if self.image is None and self.key is None and self.text is None:
            raise BadParameter(f"the JSON body must have one of {JSON_FORMS}")
        return self


JSON_FORMS = '{"image": "<base64>"}, {"key": "..."} or {"text": "..."} (text may go with image or key)'
SEARCH_BODY = {  # the request body of POST /search: an image as such, or SearchBody as JSON
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": SearchBody.model_json_schema()},
    },
}


