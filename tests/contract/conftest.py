"""Fixtures for the contract suite: one suite, every cloud backend.

``cloud`` is parametrized over the backends; a backend that cannot run on this machine
(e.g. the oracle virtualenv is missing) is skipped with its reason, except in CI where
``HASTACK_REQUIRE_ORACLE=1`` turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
from collections.abc import Iterator

import openstack
import pytest

from .backends.base import CloudUnderTest

BACKENDS = ["sim", "nova_oracle"]
HOSTS = 4


@pytest.fixture(scope="session", params=BACKENDS)
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudUnderTest]:
    name = request.param
    module = importlib.import_module(f"tests.contract.backends.{name}")
    reason = module.unavailable() if hasattr(module, "unavailable") else None
    if reason:
        if name == "nova_oracle" and os.environ.get("HASTACK_REQUIRE_ORACLE") == "1":
            pytest.fail(f"nova oracle required but unavailable: {reason}")
        pytest.skip(f"{name} backend unavailable: {reason}")
    tmp: pathlib.Path = tmp_path_factory.mktemp(name)
    with contextlib.ExitStack() as stack:
        yield stack.enter_context(module.start(tmp, HOSTS))


@pytest.fixture(scope="session")
def conn(cloud: CloudUnderTest) -> Iterator[openstack.connection.Connection]:
    c = openstack.connect(cloud=cloud.cloud_name, config_files=[str(cloud.clouds_yaml)])
    # Pin an explicit default so tests opt into newer microversions per call.
    yield c
    c.close()
