"""Named errors of the retrieval engine. Each message says what is wrong and what to do."""


class ImgSearchError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidImage(ImgSearchError):
    """The bytes are not an image we can index (corrupt, unsupported, too large)."""

    def __init__(self, reason: str, *, code: str = "not_an_image") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ModelNotFound(ImgSearchError):
    """No ONNX model (or its manifest) where one was expected."""


class ModelMismatch(ImgSearchError):
    """The index was built with another model than the one loaded."""


class IndexNotFound(ImgSearchError):
    """No manifest at the index location."""


class ObjectNotFound(ImgSearchError):
    """A stored object (segment, encoder) is missing."""


class ConflictError(ImgSearchError):
    """A compare-and-swap write lost the race (the manifest changed underneath)."""


class KeyNotIndexed(ImgSearchError):
    """A search by key names an object that is not in the index."""


class BadParameter(ImgSearchError):
    """A search or index parameter is out of range."""
