"""Fixtures of the end-to-end tests (tests/functional/harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.functional.harness import Harness, cloud_factory


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """``cloud(hosts=8, instances=40, ...)``: a started simulator and its harness."""
    yield from cloud_factory(tmp_path)
