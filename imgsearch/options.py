"""Search options as one validated value: k, metric, min_score, prefix, offset, exact, tag, expand,
collapse (and the
words of a text query, `query_text`, which are the query rather than an option).

Built by the query API from its query string (`SearchOptions.from_query`, strict: ASCII digits,
finite numbers, bounds) and by the CLI from its typed options; both pass its fields to the Searcher.

>>> SearchOptions.from_query({"k": "5", "metric": "cosine"}, default_k=10, default_metric="hybrid").k
5
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BadParameter

METRICS = ("hybrid", "cosine", "hamming")
MAX_K = 1000

MAX_OFFSET = 10_000  # paging stops here: a query never ranks more than MAX_K + MAX_OFFSET candidates
MIN_SCORE_RANGE = (-1.0, 1.0)  # scores are cosine or 1 - normalised Hamming distance, clipped to [-1, 1]
TEXT_PARAMETER = "q"  # words to search for (GET /search?q=..., or beside a POSTed image): query_text
EXPIRES_PARAMETER = "expires"  # seconds the result URLs stay valid, up to the deployment's maximum: query_expiry
QUERY_PARAMETERS = (
    "k", "metric", "min_score", "prefix", "offset", "tag", "expand", "collapse", TEXT_PARAMETER, EXPIRES_PARAMETER
)
MAX_EXPAND = 50  # α-query expansion over at most this many first hits
DEFAULT_EXPAND = 10  # … and over this many when not asked, on segments (0: off; docs/BENCHMARKS.md "Re-ranking")
DUPLICATE_RADIUS = 0.08  # near-copies: codes within this share of their bits (20 of 256; docs/BENCHMARKS.md "Duplicates")
MAX_TEXT_CHARS = 500  # a query in words: a phrase, not a document
MAX_PREFIX_CHARS = 1024  # S3 keys are at most 1024 bytes
MAX_TAG_CHARS = 100  # class names are far shorter; the Searcher checks the name against the vocabulary

_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() and int() also take '١٢' or ' 5'
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")  # no nan, inf, '1_0'


@dataclass(frozen=True)
class SearchOptions:
    """How to search: checked when built, so a SearchOptions in hand is always a valid one."""

    k: int = 10
    metric: str = "hybrid"
    min_score: float | None = None
    prefix: str | None = None
    offset: int = 0
    exact: bool = False
    tag: str | None = None  # only images tagged with this class name (Searcher checks it is one)
    # α-query expansion: re-rank by the query moved toward its first `expand` hits (0: off). None: the
    # backend's default (DEFAULT_EXPAND on segments; off on s3vectors, where it costs two more requests)
    expand: int | None = None
    collapse: bool = False  # keep only the best of each set of near-copies (codes within DUPLICATE_RADIUS)

    def __post_init__(self) -> None:
        if not _whole(self.k) or not 1 <= self.k <= MAX_K:
            raise BadParameter(f"k must be a whole number from 1 to {MAX_K}, not {self.k!r}")
        if self.metric not in METRICS:
            raise BadParameter(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        low, high = MIN_SCORE_RANGE
        if self.min_score is not None and not (
            isinstance(self.min_score, int | float)
            and not isinstance(self.min_score, bool)
            and math.isfinite(self.min_score)
            and low <= self.min_score <= high
        ):
            raise BadParameter(f"min_score must be a number from {low:g} to {high:g}, not {self.min_score!r}")
        if self.prefix is not None and not (
            isinstance(self.prefix, str) and len(self.prefix) <= MAX_PREFIX_CHARS
        ):
            raise BadParameter(f"prefix must be a string of at most {MAX_PREFIX_CHARS} characters")
        if not _whole(self.offset) or not 0 <= self.offset <= MAX_OFFSET:
            raise BadParameter(f"offset must be a whole number from 0 to {MAX_OFFSET}, not {self.offset!r}")
        if not isinstance(self.exact, bool):
            raise BadParameter(f"exact must be true or false, not {self.exact!r}")
        if not isinstance(self.collapse, bool):
            raise BadParameter(f"collapse must be true or false, not {self.collapse!r}")
        if self.expand is not None and (not _whole(self.expand) or not 0 <= self.expand <= MAX_EXPAND):
            raise BadParameter(f"expand must be a whole number from 0 to {MAX_EXPAND}, not {self.expand!r}")
        if self.tag is not None and not (isinstance(self.tag, str) and 0 < len(self.tag.strip()) <= MAX_TAG_CHARS):
            raise BadParameter(
                f"tag must be a class name of at most {MAX_TAG_CHARS} characters, such as 'golden retriever'"
            )

    @classmethod
    def from_query(
        cls,
        params: Mapping[str, str] | Mapping[str, Sequence[str]] | None,
        *,
        default_k: int,
        default_metric: str,
    ) -> SearchOptions:
        """Options from a query string's parameters (single values, or lists of values as parsed).

        Strict: a parameter given must have a value (`k=` and a bare `?k` are errors, not the default),
        at most once; whole numbers are ASCII digits; min_score is a finite decimal number; an empty
        prefix means no prefix. Unknown parameters are errors.
        """
        values = _single_values(params)
        return cls(
            k=_whole_number("k", values["k"], low=1, high=MAX_K) if "k" in values else default_k,
            metric=_metric(values["metric"]) if "metric" in values else default_metric,
            min_score=_min_score(values["min_score"]) if "min_score" in values else None,
            prefix=values.get("prefix") or None,
            offset=_whole_number("offset", values["offset"], low=0, high=MAX_OFFSET)
            if "offset" in values
            else 0,
            tag=values.get("tag") or None,
            expand=_whole_number("expand", values["expand"], low=0, high=MAX_EXPAND) if "expand" in values else None,
            collapse=_boolean("collapse", values["collapse"]) if "collapse" in values else False,
        )

    def search_kwargs(self) -> dict[str, Any]:
        """The Searcher's keyword arguments: `searcher.search(vectors, **options.search_kwargs())`."""
        return asdict(self)


def query_text(params: Mapping[str, str] | Mapping[str, Sequence[str]] | None) -> str | None:
    """The words of `?q=` (None without it), checked like the other parameters: once, with a value."""
    text = _single_values(params).get(TEXT_PARAMETER)
    return None if text is None else checked_text(text)


def query_expiry(params: Mapping[str, str] | Mapping[str, Sequence[str]] | None, *, maximum: int) -> int:
    """The result URLs' lifetime in seconds: `?expires=` (1 to `maximum`, the deployment's), else `maximum`."""
    text = _single_values(params).get(EXPIRES_PARAMETER)
    return maximum if text is None else _whole_number(EXPIRES_PARAMETER, text, low=1, high=maximum)


def checked_text(text: object) -> str:
    """Words to search for: a non-blank string of at most MAX_TEXT_CHARS characters (Unicode text)."""
    if not isinstance(text, str) or not text.strip():
        raise BadParameter('the words to search for must be a non-empty string, e.g. q=dog+on+a+beach')
    if len(text) > MAX_TEXT_CHARS:
        raise BadParameter(f"the words to search for are {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter("the words to search for are not valid Unicode text (a lone surrogate)") from None
    return text


def _single_values(params: Mapping[str, str] | Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    """One value per known parameter (single values, or lists of values as parsed); unknown names and
    repeated parameters are errors."""
    values: dict[str, str] = {}
    for name, given in (params or {}).items():
        if name not in QUERY_PARAMETERS:
            raise BadParameter(
                f"unknown query parameter {name!r}: the parameters are {', '.join(QUERY_PARAMETERS)}"
            )
        if isinstance(given, str):
            values[name] = given
        elif len(given) == 1:
            values[name] = given[0]
        else:
            raise BadParameter(f"give {name} once, not {len(given)} times")
    return values


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole_number(name: str, text: str, *, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(text):
        raise BadParameter(
            f"{name} must be a whole number from {low} to {high} (digits 0-9 only), not {text!r}"
        )
    value = int(text)
    if not low <= value <= high:
        raise BadParameter(f"{name} must be a whole number from {low} to {high}, not {value}")
    return value


def _boolean(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise BadParameter(f"{name} must be true or false, not {text!r}")
    return text == "true"


def _metric(text: str) -> str:
    if text not in METRICS:
        raise BadParameter(f"metric must be one of {', '.join(METRICS)}, not {text!r}")
    return text


def _min_score(text: str) -> float:
    low, high = MIN_SCORE_RANGE
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise BadParameter(f"min_score must be a decimal number from {low:g} to {high:g}, not {text!r}")
    return value
