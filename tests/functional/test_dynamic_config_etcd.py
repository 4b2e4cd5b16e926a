"""``hastack config set/show`` over a real etcd (one member on 127.0.0.1): the document and its
compare-and-set behave as over sqlite."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from hastack import dynamic
from hastack.cli.main import main
from hastack.clock import SystemClock
from hastack.drivers.store.etcd import EtcdStore
from hastack.etcd_cluster import LocalEtcdCluster
from tests.etcd_required import require_etcd

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


def test_set_show_and_a_stale_revision_over_etcd(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_etcd()
    with LocalEtcdCluster(tmp_path / "etcd", size=1) as etcd:
        conf = tmp_path / "hastack.yaml"
        store_conf = {"driver": "etcd", "endpoints": etcd.endpoints}
        conf.write_text(yaml.safe_dump({"cloud": {"name": "sim"}, "store": store_conf}))
        assert main(["config", "set", "--config", str(conf), "network.unfenced_moves=true"]) == 0
        assert "network.unfenced_moves false -> true" in capsys.readouterr().out
        assert main(["config", "show", "--config", str(conf), "-f", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == [
            {"key": "network.unfenced_moves", "value": True}
        ]
        store = EtcdStore(etcd.endpoints, SystemClock())
        try:
            entry = store.get(dynamic.KEY)
            assert entry is not None
            assert json.loads(entry.value) == {"network": {"unfenced_moves": True}}
            stale = f"--revision={entry.revision - 1}"
            argv = ["config", "set", "--config", str(conf), "recovery.retries=0", stale]
            assert main(argv) == 1
            assert "changed by someone else" in capsys.readouterr().err
            assert store.get(dynamic.KEY) == entry
        finally:
            store.close()
