"""Workflow tests script upstream faults per job (UpstreamSimulator.script): whatever a test
scripted is dropped afterwards, as the session's `simulator` fixture restores the global knobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def simulator(simulator: Any) -> Iterator[Any]:
    yield simulator
    simulator.clear_scripts()
