"""The deploy documentation works as written: the README's "Deploy to AWS" and docs/deploy.md.

- `cdk ls` and `cdk synth` run exactly as the docs show them (offline), in one shell per
  document, after the lines that prepare it (`source`, `export`); a `cdk ls` line's comment
  is the stack it must list.
- Every other `cdk` command (deploy, destroy, bootstrap...) uses only flags the pinned CLI knows
  and names only stacks the app synthesizes for the command's `-c` context.
- A `make` line names real targets (a dry run); an admin CLI line parses.
- The Node advice is the Makefile's: the docs export what the Makefile exports, and with only
  that, no end-of-life banner is printed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from imagegen_infra import admin
from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from tests.infra.conftest import STACK_ID, VARIANT_STACK_ID

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
CLI_BIN = REPO / "build" / "cdk-cli" / "node_modules" / ".bin"
README = (REPO / "README.md").read_text()
GUIDE = (REPO / "docs" / "deploy.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
NODE_ADVICE = re.compile(r"^export (JSII_SILENCE_WARNING_\w+)=(\S+)", re.MULTILINE)


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


DOCS = {"README.md#deploy-to-aws": section(README, "Deploy to AWS"), "docs/deploy.md": GUIDE}


def shell_lines(markdown: str) -> list[str]:
    """The lines of every bash block, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                lines.append(line.strip())
    return lines


def command_words(line: str) -> list[str]:
    """The words of a command line; a command substitution, `$(...)`, is one word."""
    return shlex.split(re.sub(r"\$\([^)]*\)", "SUBSTITUTED", line), comments=True)


def runs_offline(line: str) -> bool:
    return line.startswith(("cdk ls", "cdk synth", "source ", "export "))


@cache
def cli_help(command: str) -> dict[str, str]:
    """Option (every alias) -> its type, from `cdk <command> --help`."""
    shown = subprocess.run(
        [str(CLI_BIN / "cdk"), command, "--help"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    options: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", shown.split("Options:", 1)[1]):
        names = re.match(r"\s*(-[-\w]+(?:, -[-\w]+)*)", block)
        kind = re.search(r"\[(string|array|boolean|count|number)\]", block)
        if names and kind:
            for name in names.group(1).split(", "):
                options[name] = kind.group(1)
    assert "--context" in options, shown
    return options


def parse_cdk(words: list[str]) -> tuple[str, list[str], dict[str, str], list[str]]:
    """`cdk <command> ...` -> command, positional arguments, context, unknown flags."""
    command, rest = words[1], words[2:]
    options = cli_help(command)
    positional, context, unknown = [], {}, []
    index = 0
    while index < len(rest):
        word = rest[index]
        if word.startswith("-"):
            name, _, inline = word.partition("=")
            kind = options.get(name)
            if kind is None:
                unknown.append(name)
            elif kind not in ("boolean", "count") and not inline:
                index += 1
                inline = rest[index]
            if name in ("-c", "--context"):
                key, _, value = inline.partition("=")
                context[key] = value
        else:
            positional.append(word)
        index += 1
    return command, positional, context, unknown


@pytest.fixture(scope="module")
def cli() -> Path:
    assert (CLI_BIN / "cdk").exists(), "the CDK CLI is missing: `make setup` installs it into build/cdk-cli"
    return CLI_BIN


def test_the_docs_have_the_commands_this_test_checks() -> None:
    readme = shell_lines(DOCS["README.md#deploy-to-aws"])
    guide = shell_lines(GUIDE)
    for lines in (readme, guide):
        assert any(line.startswith("cdk ls") for line in lines)
        assert any(line.startswith("cdk synth") for line in lines)
        assert any(line.startswith("cdk deploy imagegen ") for line in lines)
        assert "source .venv/bin/activate" in " ".join(lines)
    assert any(line.startswith("cdk destroy imagegen-dev -c stage=dev") for line in guide)


def test_the_node_advice_is_the_makefiles() -> None:
    exported = dict(re.findall(r"^export (JSII_\w+) := (\S+)$", MAKEFILE, re.MULTILINE))
    assert exported == {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    for name, markdown in DOCS.items():
        advised = dict(NODE_ADVICE.findall(markdown))
        assert advised == exported, name


def test_offline_commands_run_as_written(cli: Path) -> None:
    """Both documents' offline lines, in order, in one shell; a command both show runs once."""
    script, expected, synthesized, seen = ["set -euo pipefail"], {}, {}, set()
    for doc, text in DOCS.items():
        for line in shell_lines(text):
            if not runs_offline(line):
                continue
            words = tuple(command_words(line))
            if words[0] == "cdk" and words in seen:
                continue
            seen.add(words)
            script += [f"echo '@@@ {len(expected)}'", line]
            expected[len(expected)] = (doc, line)
            if words[:2] == ("cdk", "synth"):
                synthesized[line] = bp.Blueprint.for_stage(parse_cdk(list(words))[2].get("stage")).stack_name
    assert any(line.startswith("cdk ls") for _, line in expected.values()) and synthesized
    # What a shell has after `make setup`: the CLI is found on PATH (after the venv's bin, where
    # setup links it); nothing silences jsii but what the docs export.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSII_SILENCE", "CDK_"))}
    env["PATH"] = f"{env['PATH']}:{cli}"
    started = time.time()
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"a documented command failed:\n{result.stdout}\n{result.stderr}"
    outputs = {
        int(number): text.strip()
        for number, text in re.findall(r"@@@ (\d+)\n(.*?)(?=@@@ |\Z)", result.stdout, re.DOTALL)
    }
    for index, (doc, line) in expected.items():
        if line.startswith("cdk ls") and "#" in line:  # the comment is the stack it lists
            assert outputs[index] == line.split("#", 1)[1].strip(), (
                f"{doc}: `{line}` listed {outputs[index]!r}"
            )
    for line, stack in synthesized.items():
        template = REPO / "cdk.out" / f"{stack}.template.json"
        assert template.is_file() and template.stat().st_mtime >= started, (
            f"`{line}` wrote no {template.name}"
        )
    assert "end-of-life" not in result.stderr, "the documented Node advice does not silence jsii"


def _all_cdk_lines() -> list[tuple[str, str]]:
    return [
        (doc, line) for doc, text in DOCS.items() for line in shell_lines(text) if line.startswith("cdk ")
    ]


@pytest.mark.parametrize(
    ("doc", "line"), _all_cdk_lines(), ids=[f"{d}: {line}" for d, line in _all_cdk_lines()]
)
def test_every_cdk_command_uses_real_flags_and_stack_names(
    doc: str, line: str, cli: Path, stack_artifact: Any, variant: Any
) -> None:
    command, positional, context, unknown = parse_cdk(command_words(line))
    assert not unknown, f"{doc}: `{line}`: `cdk {command}` has no option {unknown}"
    if command == "bootstrap":
        assert all(target.startswith("aws://") for target in positional), line
        return
    # The stack a context synthesizes: the session's syntheses are the default and the dev stage.
    stack = bp.Blueprint.for_stage(DeployConfig.from_context(context).stage).stack_name
    synthesized = {STACK_ID: stack_artifact, VARIANT_STACK_ID: variant}
    assert stack in synthesized, f"{doc}: `{line}`: no synthesis of the test session names {stack}"
    assert synthesized[stack].id == stack
    assert positional in ([], [stack]), (
        f"{doc}: `{line}`: no stack matches {positional} (the app has {stack})"
    )


def test_make_lines_name_real_targets() -> None:
    lines = [line for text in DOCS.values() for line in shell_lines(text) if line.startswith("make ")]
    assert lines
    for line in lines:
        # A dry run prints what would run, runs nothing; an unknown target fails it.
        result = subprocess.run(
            ["make", "-n", *command_words(line)[1:]], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"`{line}`: {result.stderr}"


def test_admin_lines_parse() -> None:
    prefix = "python -m imagegen_infra.admin "
    lines = [line for text in DOCS.values() for line in shell_lines(text) if line.startswith(prefix)]
    assert len(lines) >= 2
    for line in lines:
        args = admin.build_parser().parse_args(command_words(line)[3:])
        assert args.command in ("create-key", "outputs"), line


def test_the_readme_describes_every_output_of_both_stacks() -> None:
    rows = {
        cells[0].strip("`"): cells[1:]
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in section(README, "Stack outputs").splitlines()
            if line.startswith("| `")
        )
    }
    assert set(rows) == set(bp.LOCAL_OUTPUT_KEYS) | set(bp.CLOUD_OUTPUT_KEYS)
    for key, (local, cloud) in rows.items():
        assert local.startswith("—") == (key not in bp.LOCAL_OUTPUT_KEYS), key
        assert cloud.startswith("—") == (key not in bp.CLOUD_OUTPUT_KEYS), key
    assert "local-stack.json" in section(README, "Stack outputs")
