"""``hastack demo --ha``: hastack's own high availability, live, with real processes.

It starts a 3-member etcd cluster (Debian's ``etcd``, on 127.0.0.1), the simulated cloud as a
``hastack sim serve`` process (Nova, Placement, Glance over HTTP; an IPMI and a Redfish BMC per
host) and three ``hastack serve`` controllers, ``ctl-1`` to ``ctl-3``, with the etcd store: the
same command line an operator runs.  It shows who leads and its fencing token (the lease's
epoch), cuts the power of the compute host with the most VMs, and once the leader has
confirmed the first evacuations it SIGKILLs that leader.  Another controller takes the lease
(with a greater epoch), resumes the recovery from the journal in etcd and finishes it.

The summary is checked, and the exit status is 1 when a check fails: the recovery finished
within :data:`DEADLINE`, every VM of the host was evacuated exactly once according to Nova's
migration records, the simulator runs as many VMs as there are instances and none on the
dead host.  Finally the
killed controller is started again and must join as a follower.  With ``keep_running`` it all
stays up until Ctrl-C, for an operator to poke at.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from hastack.clock import SystemClock
from hastack.demo import DemoApi, free_port
from hastack.drivers.store.etcd import EtcdStore
from hastack.engine.engine import LEADER, summarize
from hastack.engine.journal import Journal, Operation, Step, StepState
from hastack.errors import HastackError
from hastack.etcd_cluster import LocalEtcdCluster, etcd_binary
from hastack.policy import recovery
from hastack.ports.store import Lease
from hastack.sim.process import SimProcess, sim_process, stop_processes

NAMES = ("ctl-1", "ctl-2", "ctl-3")
LEASE_TTL = 3.0  # a dead leader is replaced after this, plus up to a tick
TICK = 0.5
DEADLINE = 120.0  # from the power loss to every evacuation confirmed
POLL = 0.2
SIM_ARGS = [
    "--hosts", "10", "--instances", "300", "--seed", "7",
    "--host-vcpus", "160", "--host-memory-mb", "393216",
    "--evacuate-seconds", "4", "--report-interval", "2", "--service-down-time", "12",
    "--network-nodes", "0",
]  # fmt: skip
CLOUD = "hastack-sim"

T = TypeVar("T")


class DemoFailed(Exception):
    """A check of the demo failed: printed, exit status 1."""


def _wait(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL / 4)
    raise DemoFailed(f"not within {seconds:g}s: {what}")


class Stage:
    """The etcd cluster, the simulator and the three controller processes."""

    def __init__(self, etcd: LocalEtcdCluster, sim: SimProcess, workdir: Path) -> None:
        self.etcd = etcd
        self.sim = sim
        self.workdir = workdir
        self.store = EtcdStore(etcd.endpoints, SystemClock(), timeout=1.0)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.clouds_yaml = Path(sim.state["clouds_yaml"])
        self.api = DemoApi.new()
        self.urls = {name: f"http://127.0.0.1:{free_port()}" for name in NAMES}

    def config(self, name: str) -> Path:
        """The simulator's hastack.yaml with this controller's name and the etcd store."""
        raw = yaml.safe_load((self.sim.workdir / "hastack.yaml").read_text())
        raw["profile"] = "fast"
        raw["controller"] = {"name": name, "tick": TICK, "lease_ttl": LEASE_TTL}
        raw["store"] = {"driver": "etcd", "endpoints": self.etcd.endpoints, "timeout": 1.0}
        raw["recovery"] = {"max_parallel": 10}
        raw["api"] = self.api.section(self.urls[name].removeprefix("http://"))
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        path.chmod(0o600)  # BMC passwords
        return path

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "hastack", "serve", "--config", str(self.config(name))]
        with self.log(name).open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        stop_processes(self.procs.values())
        self.store.close()

    def leader(self) -> Lease | None:
        with contextlib.suppress(HastackError):
            return self.store.current(LEADER)
        return None

    def recovery(self, host: str) -> Operation | None:
        with contextlib.suppress(HastackError):
            ops = [op for op, _ in Journal(self.store).operations()]
            return next((op for op in ops if op.subject == host), None)
        return None

    def hosts(self) -> list[dict[str, Any]]:
        """The simulator's physical truth, host by host (its control endpoint)."""
        r = requests.get(f"{self.sim.state['control_url']}/hosts", timeout=10)
        r.raise_for_status()
        hosts: list[dict[str, Any]] = r.json()["hosts"]
        return hosts

    def fail(self, host: str) -> None:
        url = f"{self.sim.state['control_url']}/hosts/{host}/fail"
        requests.post(url, json={"mode": "power"}, timeout=10).raise_for_status()

    def evacuations(self) -> collections.Counter[str]:
        """Evacuation requests Nova received, per instance (its migration records)."""
        from hastack.drivers.openstack.connection import connect  # noqa: PLC0415 (slow import)

        conn = connect(self.clouds_yaml, CLOUD)
        try:
            url = "/os-migrations?migration_type=evacuation"
            data = conn.compute.get(url, microversion="2.59").json()
        finally:
            conn.close()
        return collections.Counter(m["instance_uuid"] for m in data["migrations"])


def _evacuations(op: Operation) -> list[Step]:
    return [s for s in op.steps if s.kind == recovery.EVACUATE and not s.params.get("skip")]


def _confirmed(op: Operation) -> int:
    return sum(1 for s in _evacuations(op) if s.state == StepState.DONE)


class Narrator:
    """Prints the recovery as the journal in etcd shows it: each new verdict of the operation,
    and the count of confirmed evacuations when it changes (at most every 2 s)."""

    def __init__(self, failed_at: float) -> None:
        self.failed_at = failed_at
        self.seen = 0
        self.confirmed = -1
        self.said = 0.0  # when the count was last printed

    def say(self, text: str) -> None:
        print(f"  t+{time.time() - self.failed_at:5.1f}s  {text}", flush=True)

    def show(self, op: Operation | None) -> None:
        if op is None:
            return
        for line in op.log[self.seen :]:
            stamp, _, message = line.partition(" ")
            with contextlib.suppress(ValueError):
                at = float(stamp)
                print(f"  t+{at - self.failed_at:5.1f}s  [epoch {op.epoch}] {message}", flush=True)
        self.seen = len(op.log)
        evacs = _evacuations(op)
        done = _confirmed(op)
        quiet = time.monotonic() - self.said < 2 and 0 < done < len(evacs)
        if evacs and done != self.confirmed and not quiet:
            self.confirmed, self.said = done, time.monotonic()
            self.say(f"evacuations confirmed ACTIVE: {done}/{len(evacs)}")


def _watch(
    stage: Stage, host: str, narrator: Narrator, until: Callable[[Operation], bool], what: str
) -> Operation:
    """Poll ``host``'s recovery until ``until`` holds, narrating; :data:`DEADLINE` counts from
    the failure."""
    while time.time() - narrator.failed_at < DEADLINE:
        op = stage.recovery(host)
        narrator.show(op)
        if op is not None and until(op):
            return op
        time.sleep(POLL)
    raise DemoFailed(f"{what}: not within {DEADLINE:g}s of the failure")


def _mid_evacuation(op: Operation) -> bool:
    evacs = _evacuations(op)
    return bool(evacs) and 0 < _confirmed(op) < len(evacs)


def _finished(op: Operation) -> bool:
    evacs = _evacuations(op)
    return bool(evacs) and all(s.state == StepState.DONE for s in evacs)


def _start_controllers(stage: Stage) -> Lease:
    for name in NAMES:
        stage.start(name)
    print(
        f"\nControllers: {', '.join(NAMES)} (`hastack serve`, tick {TICK:g}s, lease {LEASE_TTL:g}s)"
    )
    lease = _wait(stage.leader, 30, "a controller takes the leader lease")
    others = ", ".join(n for n in NAMES if n != lease.holder)
    print(f"  {lease.holder} leads, fencing token (epoch) {lease.epoch}; {others} stand by")
    return lease


def _victim(stage: Stage) -> tuple[str, int]:
    """The compute host carrying the most VMs, and how many."""
    doc = max((h for h in stage.hosts() if h["compute"]), key=lambda h: int(h["instances"]))
    return str(doc["host"]), int(doc["instances"])


@dataclasses.dataclass(frozen=True)
class Takeover:
    old: Lease  # the leader that was killed
    new: Lease
    seconds: float  # from the SIGKILL to the new lease
    killed_at: float  # wall time of the SIGKILL


def _successor(stage: Stage, old: Lease) -> Lease | None:
    lease = stage.leader()
    return lease if lease is not None and lease.holder != old.holder else None


def _takeover(stage: Stage, first: Lease, narrator: Narrator, op: Operation) -> Takeover:
    """SIGKILL the leader in the middle of ``op`` and wait for another controller to lead."""
    first = stage.leader() or first  # whoever leads now
    killed_wall, killed_at = time.time(), time.monotonic()
    stage.kill(first.holder)
    narrator.say(
        f"SIGKILL {first.holder} (pid {stage.procs[first.holder].pid}), the leader, with "
        f"{_confirmed(op)}/{len(_evacuations(op))} evacuations confirmed"
    )
    new = _wait(lambda: _successor(stage, first), LEASE_TTL + 15, "another controller leads")
    took = time.monotonic() - killed_at
    narrator.say(
        f"{new.holder} leads, epoch {new.epoch} (was {first.epoch}): "
        f"takeover {took:.1f}s after the kill"
    )
    resumed = _grep(stage.log(new.holder), "resuming", 3.0)
    if resumed:
        narrator.say(f"{new.holder}: {resumed}")
    return Takeover(first, new, took, killed_wall)


def _grep(path: Path, word: str, seconds: float, offset: int = 0) -> str | None:
    """The first line of ``path`` from byte ``offset`` on that holds ``word`` (without its
    logging prefix), looking again for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        for line in text.splitlines():
            if word in line:
                return line.split(": ", 1)[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL)


def _summary(stage: Stage, op: Operation, host: str, takeover: Takeover) -> list[str]:
    """Print what happened; return the problems found (none: the demo passed)."""
    row = summarize([op])[0]
    evacs = _evacuations(op)
    moved = [str(s.params["instance"]) for s in evacs]
    before = sum(1 for s in evacs if float(s.params.get("issued_at", 1e18)) < takeover.killed_at)
    counts = stage.evacuations()
    twice = {i: n for i, n in counts.items() if n > 1}
    new = takeover.new
    print("\nSummary")
    print(f"  operation    {op.id}: {row['state']}, host {row['host_state']} ({row['reason']})")
    print(f"               last written under epoch {op.epoch}")
    print(f"  evacuated    {_confirmed(op)}/{len(evacs)} VMs of {host} confirmed ACTIVE; issued by")
    print(f"               {takeover.old.holder}: {before}, by {new.holder}: {len(evacs) - before}")
    print(
        f"  Nova         {sum(counts.values())} evacuation records for {len(counts)} VMs; "
        f"evacuated more than once: {len(twice)}"
    )
    print(
        f"  takeover     {takeover.old.holder} (epoch {takeover.old.epoch}) -> {new.holder} "
        f"(epoch {new.epoch}) in {takeover.seconds:.1f}s"
    )
    problems = []
    if twice:
        problems.append(f"evacuated more than once: {twice}")
    if sorted(counts) != sorted(moved):
        problems.append("Nova's evacuation records do not match the recovery's evacuations")
    if op.epoch != new.epoch:
        problems.append(f"the operation was last written under epoch {op.epoch}, not {new.epoch}")
    return problems + _truth(stage, host)


def _truth(stage: Stage, host: str) -> list[str]:
    hosts = stage.hosts()
    dead = next(h for h in hosts if h["host"] == host)
    running = sum(int(h["running_vms"]) for h in hosts)
    total = sum(int(h["instances"]) for h in hosts)
    print(
        f"  simulator    {host} power {dead['power']}, running {dead['running_vms']} VMs; "
        f"{running} VMs running for {total} instances"
    )
    problems = []
    if dead["power"] != "off" or dead["running_vms"]:
        problems.append(f"{host} is not off, or still runs VMs")
    if running != total:
        problems.append(f"{running} VMs running for {total} instances")
    return problems


def _rejoin(stage: Stage, takeover: Takeover) -> list[str]:
    """Start the killed controller again: it must stay up and leave the lease alone."""
    killed, successor = takeover.old.holder, takeover.new
    offset = stage.log(killed).stat().st_size
    proc = stage.start(killed)
    print(f"\nRestarting {killed} (pid {proc.pid})")
    started = f"hastack controller {killed}"
    _wait(lambda: _grep(stage.log(killed), started, 0, offset), 30, f"{killed} starts again")
    time.sleep(LEASE_TTL)  # several of its ticks
    lease = stage.leader()
    if proc.poll() is not None:
        return [f"{killed} exited with status {proc.returncode} (see {stage.log(killed)})"]
    if lease is None or (lease.holder, lease.epoch) != (successor.holder, successor.epoch):
        return [f"the lease moved when {killed} came back: {lease}"]
    print(f"  {killed} runs as a follower: {successor.holder} still leads, epoch {lease.epoch}")
    return []


def _play(stage: Stage) -> list[str]:
    """The story: leader, failure, kill, takeover, recovery, rejoin; the problems found."""
    first = _start_controllers(stage)
    host, vms = _victim(stage)
    time.sleep(2 * TICK)  # the leader sees every host healthy once
    print(f"\nInjecting: power loss on {host} ({vms} VMs)\n")
    narrator = Narrator(time.time())
    stage.fail(host)
    op = _watch(stage, host, narrator, _mid_evacuation, "evacuations under way")
    takeover = _takeover(stage, first, narrator, op)
    op = _watch(stage, host, narrator, _finished, "the recovery finishes")
    narrator.say("every evacuation confirmed; the operation stays open for the host's return")
    return _summary(stage, op, host, takeover) + _rejoin(stage, takeover)


def _endpoints(stage: Stage) -> None:
    me = f"{sys.executable} -m hastack"
    print("\nStill running; Ctrl-C stops everything.")
    print(f"  etcd         {', '.join(stage.etcd.endpoints)}")
    print(f"  cloud        {stage.sim.state['base_url']} (clouds.yaml {stage.clouds_yaml}, "
          f"cloud {CLOUD})")  # fmt: skip
    for name, proc in stage.procs.items():
        print(f"  {name:<12} pid {proc.pid}, config {stage.workdir / name}.yaml, "
              f"log {stage.log(name)}")  # fmt: skip
    url = stage.urls[NAMES[0]]
    print(f"  dashboard    {stage.api.dashboard(url)} (any controller's URL: followers forward)")
    print("Try:")
    print(f"  HASTACK_URL={url} HASTACK_TOKEN={stage.api.operator} {me} operation list")
    print(f"  {me} sim hosts --workdir {stage.sim.workdir}")
    print(f"  {me} sim fail compute01 --workdir {stage.sim.workdir}")
    print("  kill -9 <the leader's pid>   (leadership changes are printed here)")


def _stay(stage: Stage) -> None:
    """Until Ctrl-C (or SIGTERM): print every change of leader."""
    _endpoints(stage)
    last: tuple[str, int] | None = None
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            lease = stage.leader()
            now = (lease.holder, lease.epoch) if lease else ("nobody", 0)
            if now != last:
                print(f"  {time.strftime('%H:%M:%S')} leader: {now[0]}, epoch {now[1]}", flush=True)
                last = now
            time.sleep(1)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT unwind as KeyboardInterrupt, so every process is stopped on the way
    out (SIGINT too: a shell starts background jobs with SIGINT ignored)."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stage(stack: contextlib.ExitStack, workdir: Path) -> Stage:
    """Start etcd and the simulator; ``stack`` stops them (and the controllers) on exit."""
    etcd = LocalEtcdCluster(workdir / "etcd")
    stack.callback(etcd.stop)  # before start(): a member that fails must not strand the others
    try:
        etcd.start()
        print(f"  etcd        3 members: {', '.join(etcd.endpoints)}")
        sim = stack.enter_context(sim_process(workdir / "sim", SIM_ARGS))
    except RuntimeError as exc:
        raise DemoFailed(f"could not start: {exc}") from None
    print(f"  cloud       {sim.state['base_url']} (`hastack sim serve`: 10 hosts, 300 VMs)")
    print(f"  workdir     {workdir} (configs and logs)")
    stage = Stage(etcd, sim, workdir)
    stack.callback(stage.stop)
    print(f"  dashboard   {stage.api.dashboard(stage.urls[NAMES[0]])} (followers forward)")
    return stage


def run(workdir: Path | None = None, *, keep_running: bool = False) -> int:
    """Run the HA demo; 0 when every check passed, 1 otherwise (or without etcd)."""
    if etcd_binary() is None:
        print(
            "hastack demo --ha needs etcd: apt-get install etcd-server "
            "(or run `make demo-ha` as root, which installs it)",
            file=sys.stderr,
        )
        return 1
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="hastack-demo-ha-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print("== hastack demo --ha: three controllers on etcd, the leader killed mid-recovery ==")
    with _interruptible(), contextlib.ExitStack() as stack:
        stage: Stage | None = None
        try:
            stage = _stage(stack, workdir)
            problems = _play(stage)
        except DemoFailed as exc:
            problems = [str(exc)]
        for problem in problems:
            print(f"  PROBLEM: {problem}")
        print("\nDemo finished." if not problems else "\nDemo finished with problems.")
        if keep_running and stage is not None:
            _stay(stage)
    return 1 if problems else 0
