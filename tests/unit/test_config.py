"""Configuration: the sample validates, bad input gets every problem named, no secret shown."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from hastack.cli.main import main
from hastack.config import load_config, parse_config
from hastack.domain.instances import Protect
from hastack.errors import ConfigError

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "etc" / "hastack.yaml.sample"


def sample() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    return data


def test_the_sample_documents_a_valid_config() -> None:
    config = load_config(SAMPLE)
    assert config.segment_of("compute05").name == "gold"  # type: ignore[union-attr]
    assert config.segment_of("other").name == "batch"  # type: ignore[union-attr]
    assert config.segments[1].recovery.policy().protect == Protect.OPT_IN
    assert config.detection_profile().confirm_after == 5.0
    assert [b.kind for b in config.guard_policy().budgets] == ["cloud"]


def test_every_problem_is_named_with_its_place() -> None:
    data = sample()
    data["profile"] = "turbo"
    data["segments"][0]["recovery"]["protect"] = "some"
    data["recovery"]["max_parallel"] = 0
    data["guards"]["budgets"][0]["kind"] = "rack"
    data["surprise"] = 1
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    text = str(err.value)
    for place in (
        "profile:",
        "segments[0].recovery.protect:",
        "recovery.max_parallel:",
        "guards.budgets[0].kind:",
        "surprise:",
    ):
        assert place in text, text


def test_a_bad_fence_device_is_reported_without_its_password() -> None:
    data = sample()
    device = data["hosts"]["compute01"]["fencing"][0]["devices"][0]
    device["password"] = "hunter2-secret"
    device["port"] = 70000
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "hosts.compute01.fencing[0].devices[0].port" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


def test_rules_need_their_key_and_segments_unique_names() -> None:
    data = sample()
    data["segments"][0]["recovery"]["opt_in"] = [{"kind": "metadata", "value": "x"}]
    with pytest.raises(ConfigError, match=r"segments\[0\].recovery.opt_in\[0\]: .*needs a key"):
        parse_config(data)
    data = sample()
    data["segments"][1]["name"] = "gold"
    with pytest.raises(ConfigError, match="segment names must be unique: gold"):
        parse_config(data)


def test_the_etcd_store_needs_its_endpoints() -> None:
    data = sample()
    data["store"] = {"driver": "etcd"}
    with pytest.raises(ConfigError, match=r"store: .*driver etcd needs endpoints"):
        parse_config(data)
    data["store"] = {"driver": "etcd", "endpoints": ["10.0.0.1:2379"]}
    with pytest.raises(ConfigError, match="not an http"):
        parse_config(data)
    data["store"] = {"driver": "etcd", "endpoints": ["http://10.0.0.1:2379"], "timeout": 1}
    config = parse_config(data)
    assert config.store.endpoints == ("http://10.0.0.1:2379",)


def test_unreadable_and_invalid_yaml(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cloud: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML.*line"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_config_check_command(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(SAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cloud": {"name": ""}}))
    assert main(["config", "check", str(bad)]) == 1
    assert "cloud.name" in capsys.readouterr().err


@pytest.mark.parametrize("unit_name", ["hastack.service", "hastack-agent.service"])
def test_the_systemd_units_run_commands_the_cli_has(unit_name: str) -> None:
    """etc/systemd/*.service: every Exec line parses with hastack's own CLI."""
    import shlex  # noqa: PLC0415

    from hastack.cli.main import build_parser  # noqa: PLC0415

    unit = SAMPLE.parent / "systemd" / unit_name
    execs = [
        line.partition("=")[2]
        for line in unit.read_text().splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    assert len(execs) == 2
    for line in execs:
        argv = shlex.split(line)
        assert argv[0].endswith("/bin/hastack")
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)


def test_the_agent_sample_is_valid() -> None:
    from hastack.agent.config import load_agent_config  # noqa: PLC0415

    config = load_agent_config(SAMPLE.parent / "hastack-agent.yaml.sample")
    assert config.host == "compute01"
    assert [c.name for c in config.checks] == ["nova-compute", "libvirtd", "ovs"]
    assert config.self_fence.enabled is False
    assert set(config.peer_addresses()) == {"compute02", "compute03"}
