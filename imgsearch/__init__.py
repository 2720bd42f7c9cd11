"""imgsearch: content-based image retrieval on S3 (or a folder) with CNN embeddings and USearch.

The core package imports no AWS SDK at module level: S3 is used only when an s3:// index is opened.
"""

# onnxruntime must be loaded before usearch: the other order segfaults in the process (usearch 2.26.6
# with onnxruntime 1.32 on Linux x86_64; tests/unit/test_imports.py guards it).
import onnxruntime  # noqa: F401  # isort: skip

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
