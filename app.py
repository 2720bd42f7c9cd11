#!/usr/bin/env python3
"""CDK app: one imgsearch stack per stage, configured from context (cdk.json or -c key=value), checked by cdk-nag."""

from __future__ import annotations

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import ContextError, from_context
from stacks.imgsearch_stack import ImgSearchStack


def build(app: cdk.App) -> ImgSearchStack:
    config = from_context(app.node.try_get_context)
    stack = ImgSearchStack(
        app,
        f"ImgSearch-{config.stage}",
        config=config,
        description=f"imgsearch ({config.stage}): serverless content-based image retrieval",
    )
    cdk.Tags.of(stack).add("project", "imgsearch")
    cdk.Tags.of(stack).add("stage", config.stage)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack


if __name__ == "__main__":
    app = cdk.App()
    try:
        build(app)
    except ContextError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app.synth()
