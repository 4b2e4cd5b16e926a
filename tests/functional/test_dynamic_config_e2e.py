"""Dynamic configuration through the production wiring: a running controller
(:func:`hastack.controller.build_controller`) picks up ``hastack config set`` on its next tick,
its TCP probe included, and goes back to the file's values on ``unset``."""

from __future__ import annotations

from collections.abc import Callable

from hastack.cli.main import main
from hastack.domain.hosts import Signal
from tests.functional.harness import Harness, wait_for


def test_a_running_controller_follows_config_set_and_unset(
    cloud: Callable[..., Harness],
) -> None:
    h = cloud(hosts=4, instances=8)
    h.start()
    conf = str(h.workdir / "hastack-e2e.yaml")
    probe = h.engine.signals[Signal.PROBE]
    assert h.engine.settings.max_parallel == 20 and probe.profile.probe_failures == 2
    argv = ["config", "set", "--config", conf, "recovery.max_parallel=3"]
    assert main([*argv, "detection.probe_failures=4"]) == 0
    wait_for(lambda: h.engine.settings.max_parallel == 3, 5, "the leader applies the change")
    assert probe.profile.probe_failures == 4
    assert main(["config", "unset", "--config", conf, "--all"]) == 0
    wait_for(lambda: h.engine.settings.max_parallel == 20, 5, "back to the file's values")
    assert probe.profile.probe_failures == 2
    assert all(r.state.value == "ok" for r in h.engine.records.values())
