"""The CDK app: `python infra/app.py` writes the cloud assembly to cdk.out/ (what `cdk synth`
and `cdk deploy` run, see cdk.json). Offline: no credentials, no lookups, no Docker; the
stack is environment-agnostic (account and region are CloudFormation pseudo parameters).

One stack per synthesis: the deployment named by the `stage` context (`cdk deploy -c stage=dev`),
whose construct id is its stack name, `imagegen` or `imagegen-<stage>`, so `cdk deploy imagegen`
names it the way CloudFormation does.

cdk-nag's AwsSolutions checks run on every synth: an unacknowledged finding fails it (and so
`cdk deploy`), listing every finding.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in ("infra", "functions"):  # the stack reads the blueprint and the functions' Settings
    if str(REPO_ROOT / folder) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / folder))

from aws_cdk import App, Aspects, Tags, cx_api  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from imagegen_infra import blueprint as bp  # noqa: E402
from imagegen_infra.config import DeployConfig  # noqa: E402
from imagegen_infra.stack import ImagegenStack  # noqa: E402

CDK_JSON = REPO_ROOT / "cdk.json"
# With this feature flag (cdk.json), error annotations (cdk-nag findings) fail synthesis.
FINDINGS_FAIL_SYNTH = "@aws-cdk/core:annotationsInValidationReport"


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context: the CLI passes it to the app itself, `python infra/app.py` does not."""
    return dict(json.loads(CDK_JSON.read_text()).get("context", {}))


def build(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, ImagegenStack]:
    """The app and its one stack. `context` overrides cdk.json (as `-c key=value` does); the
    CLI's own context (CDK_CONTEXT_JSON) wins over both, as with any CDK app."""
    merged = {**cdk_json_context(), **(context or {})}
    app = App(context=merged, outdir=outdir)
    config = DeployConfig.from_context(app.node.get_all_context())
    names = bp.Blueprint.for_stage(config.stage)
    stack = ImagegenStack(
        app,
        names.stack_name,
        stack_name=names.stack_name,
        config=config,
        names=names,
        description=f"{names.prefix}: serverless image-generation job service",
    )
    Tags.of(stack).add("project", bp.PREFIX)
    if config.stage:
        Tags.of(stack).add("stage", config.stage)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack


def synth(
    outdir: str | None = None, context: Mapping[str, Any] | None = None, fail_on_findings: bool = True
) -> cx_api.CloudAssembly:
    """Synthesize into `outdir` (default: $CDK_OUTDIR, as the CLI sets it, else ./cdk.out).
    An unacknowledged cdk-nag finding fails synthesis, listing them all in the error; tests
    pass fail_on_findings=False to read the findings from the assembly instead."""
    context = dict(context or {})
    if not fail_on_findings:
        context[FINDINGS_FAIL_SYNTH] = False
    app, _ = build(context, outdir or os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out"))
    return app.synth()


if __name__ == "__main__":
    assembly = synth()
    if "CDK_OUTDIR" not in os.environ:  # run by hand (make synth); the CDK CLI reports for itself
        names = ", ".join(stack.stack_name for stack in assembly.stacks)
        print(f"synthesized {names} into {assembly.directory}")
