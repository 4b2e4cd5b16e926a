"""Self-fencing end to end: a host cut off from everything, whose BMC is dead, is recovered
only after its own watchdog has reset it.

The simulated cloud over HTTP, the production controller (``build_controller``) with its agent
listener, and a real node agent (:class:`NodeAgent`, real UDP) for every host.  The victim's
agent runs with self-fencing on and the software watchdog, whose action powers the host off in
the simulator (``hastack sim fail HOST --mode power``): what a watchdog reset does to the VMs.
Its heartbeats pass through a UDP relay that the test cuts (the stand-in for the isolated
host's network: the simulator's isolation does not reach real sockets).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hastack.agent.config import parse_agent_config
from hastack.agent.node import NodeAgent
from hastack.engine.journal import StepState
from hastack.sim import faults
from tests.functional.harness import Harness, cloud_factory, wait_for
from tests.functional.test_agent import Relay

pytestmark = [pytest.mark.wire, pytest.mark.timeout(180)]

KEY = "self-fence-e2e-key-0123456789"
AFTER, WD, INTERVAL = 2.0, 2, 0.25


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    yield from cloud_factory(tmp_path)


def test_an_isolated_host_with_a_dead_bmc_is_recovered_after_its_watchdog(
    cloud: Callable[..., Harness], tmp_path: Path
) -> None:
    h = cloud(hosts=5, instances=15)
    victim = h.busiest_host()
    victims = h.instances_on(victim)
    key_file = tmp_path / "agent.key"
    key_file.write_text(KEY)
    h.raw["agents"] = {
        "listen": "127.0.0.1:0",
        "key_file": str(key_file),
        "peer_gap": 0.8,
    }  # < AFTER / 2
    h.raw["hosts"][victim]["fencing"].append({"devices": [{"type": "watchdog", "margin": 1.0}]})
    h.raw["recovery"] = {"fence_timeout": 2.0, "fence_attempts": 1}
    controller = h.start()
    assert controller.agents is not None
    listener = f"127.0.0.1:{controller.agents.address[1]}"
    relay = Relay(controller.agents.address)
    agents: dict[str, NodeAgent] = {}
    try:
        for host in sorted(h.world.hosts):
            if host == victim:
                continue
            raw = {"host": host, "controllers": [listener], "key_file": str(key_file)}
            raw.update(listen="127.0.0.1:0", interval=INTERVAL)
            agents[host] = NodeAgent(parse_agent_config(raw), KEY.encode()).start()
        peers = {p: f"127.0.0.1:{agents[p].address[1]}" for p in sorted(agents)[:2]}
        power_off = [sys.executable, "-m", "hastack", "sim", "fail", victim, "--mode", "power"]
        power_off += ["--url", h.sim.url]
        raw = {"host": victim, "controllers": [relay.address], "key_file": str(key_file)}
        raw.update(listen="127.0.0.1:0", interval=INTERVAL)
        raw["self_fence"] = {"enabled": True, "after": AFTER, "watchdog": "soft", "timeout": WD,
                             "soft_action": power_off, "peers": peers}  # fmt: skip
        agents[victim] = NodeAgent(parse_agent_config(raw), KEY.encode()).start()
        wait_for(
            lambda: (
                all(
                    r.lost is False
                    for r in controller.agents.read(list(agents), time.time()).values()
                )
                and len(controller.agents.hosts()) == len(agents)
            ),
            10,
            "every agent heard",
        )

        # the victim is cut off from everything, and its BMC is dead: no power proof
        faults.fail(h.world, victim, "bmc-dead")
        faults.fail(h.world, victim, "isolate")
        relay.cut = True
        cut = time.time()
        wait_for(lambda: not h.world.hosts[victim].power_on, 30, "the watchdog resets the host")
        reset = time.time()
        assert reset - cut >= AFTER - 2 * INTERVAL  # not before it had lost the leader
        h.wait_state(victim, "recovered", 60)
    finally:
        for agent in agents.values():
            agent.stop()
        relay.close()

    op = h.op(victim)
    fence = op.step("fence")
    assert fence is not None and fence.state == StepState.DONE
    proof = fence.params["proof"]
    assert proof["kind"] == "watchdog-self-fenced", proof
    assert proof["by"] == f"watchdog:{victim}"
    assert proof["confirmed_at"] >= reset - 0.5, (proof["confirmed_at"], reset)
    levels = {a["level"]: a for a in fence.params["attempts"]}
    assert levels[0]["ok"] is False  # the dead BMC first
    evacuations = [s for s in op.steps if s.kind == "evacuate"]
    assert evacuations and min(s.updated for s in evacuations) >= reset
    h.assert_moved_once(victim, victims)
    h.assert_all_evacuated(op, victims)
    assert all(h.evacuations()[v] == 1 for v in victims)
