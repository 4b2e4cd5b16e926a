"""The one rule for tests that need a real etcd: skip when it is not installed, except in CI
(``HASTACK_REQUIRE_ORACLE=1``), where a missing etcd is a failure."""

from __future__ import annotations

import os

import pytest

from hastack.etcd_cluster import etcd_binary


def require_etcd() -> None:
    if etcd_binary() is not None:
        return
    if os.environ.get("HASTACK_REQUIRE_ORACLE") == "1":
        pytest.fail("etcd is required (apt-get install etcd-server) but not installed")
    pytest.skip("etcd is not installed (apt-get install etcd-server)")
