"""Loads onnxruntime; every core module that imports usearch imports this first.

usearch 2.26.6 loaded before onnxruntime 1.32 segfaults the process (Linux x86_64), so onnxruntime must
be in the process before usearch is. The only core module that imports usearch, imgsearch.segment,
imports this module first; everything else (imgsearch itself, imgsearch.settings, imgsearch.options)
loads neither, so the CDK app can import the core's constants. tests/unit/test_imports.py guards both.
"""

import onnxruntime  # noqa: F401
