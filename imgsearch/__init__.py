"""imgsearch: content-based image retrieval on S3 (or a folder) with CNN embeddings and USearch.

The core package imports no AWS SDK at module level: S3 is used only when an s3:// index is opened.
Importing it (or imgsearch.settings) loads neither onnxruntime nor usearch; the modules that import usearch
load onnxruntime first (imgsearch/_onnx_first.py: the other order segfaults).
"""

from .errors import (
    BadParameter,
    ConflictError,
    ImgSearchError,
    IndexNotFound,
    InvalidImage,
    KeyNotIndexed,
    ModelMismatch,
    ModelNotFound,
)

__all__ = [
    "BadParameter",
    "ConflictError",
    "ImgSearchError",
    "IndexNotFound",
    "InvalidImage",
    "KeyNotIndexed",
    "ModelMismatch",
    "ModelNotFound",
]
__version__ = "0.1.0"
