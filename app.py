#!/usr/bin/env python3
"""CDK app: builds the imgsearch stack for one stage (configuration from cdk.json context)."""

import aws_cdk as cdk

from stacks.imgsearch_stack import ImgSearchStack

app = cdk.App()
ImgSearchStack(app, f"ImgSearch-{app.node.try_get_context('stage') or 'dev'}")
app.synth()
