"""The BMC signal: each host's power as its first fence level's device(s) read it.

``off`` is a loss; ``on`` is not (a hung kernel has power too); a host whose devices fail or
disagree (two feeds, one says off) gives no data.  Reads run on a small thread pool, every device
at most once per read.  A device whose status from an earlier read is still running (a library
stuck past the fencing port's time budget) is not called again: its host gets no data until it
returns, so stuck calls cannot pile up on the pool.

Time budget of one read: about ``ceil(devices / workers) * (timeout + 1)`` seconds; whatever
has not answered by then is reported as no data.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence

from hastack.domain.hosts import Reading, Signal
from hastack.policy.detection import bmc_reading
from hastack.ports.fencing import FenceDevice, FenceResult, PowerState

log = logging.getLogger(__name__)

_MARGIN = 1.0  # the fencing port lets a device overrun its timeout by under a second
Status = concurrent.futures.Future[FenceResult]


class BmcPower:
    """The BMC signal from ``devices`` (host -> its first fence level's devices).

    ``read`` is meant to be called from one thread; it never raises.  :meth:`close` stops the
    pool (calls still running are left to finish on their own).
    """

    signal = Signal.BMC

    def __init__(
        self,
        devices: Mapping[str, Sequence[FenceDevice]],
        *,
        timeout: float,
        workers: int = 16,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout: must be positive, not {timeout!r}")
        self.timeout = timeout
        self._devices = {h: tuple(d) for h, d in devices.items() if d}
        self._workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="bmc-read")
        self._running: dict[int, Status] = {}  # by id(device): calls not yet returned

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        wanted = [h for h in dict.fromkeys(hosts) if h in self._devices]
        try:
            results = self._status_all(wanted)
        except Exception as exc:  # the port's contract: never raise
            log.exception("BMC power: unexpected failure")
            return {h: Reading(Signal.BMC, None, now, f"BMC not read: {exc}") for h in wanted}
        return {h: self._reading(self._devices[h], results, now) for h in wanted}

    def _status_all(self, hosts: list[str]) -> dict[int, FenceResult | str]:
        """Each device's status (by id), or why there is none."""
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        results: dict[int, FenceResult | str] = {}
        started: dict[int, Status] = {}
        for host in hosts:
            for device in self._devices[host]:
                key = id(device)
                if key in results or key in started:
                    continue  # shared by two hosts: once per read
                if key in self._running:
                    results[key] = "an earlier status call is still running"
                    continue
                started[key] = self._running[key] = self._pool.submit(device.status, self.timeout)
        rounds = math.ceil(len(started) / self._workers) if started else 0
        deadline = time.monotonic() + rounds * (self.timeout + _MARGIN)
        for key, future in started.items():
            try:
                results[key] = future.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                future.cancel()  # not started yet: never will; running: left to finish
                results[key] = f"no answer within {rounds * (self.timeout + _MARGIN):.1f}s"
            except Exception as exc:  # a device that broke the port's never-raise rule
                results[key] = f"status raised {type(exc).__name__}: {exc}"
        return results

    def _reading(
        self, devices: Sequence[FenceDevice], results: Mapping[int, FenceResult | str], now: float
    ) -> Reading:
        powers: set[PowerState] = set()
        for device in devices:
            result = results[id(device)]
            if isinstance(result, str):
                return Reading(Signal.BMC, None, now, f"{device.name}: {result}")
            if not result.ok or result.power == PowerState.UNKNOWN:
                return Reading(Signal.BMC, None, now, f"{device.name}: {result.reason}")
            powers.add(result.power)
        if len(powers) != 1:
            seen = ", ".join(f"{d.name} {_power(results[id(d)])}" for d in devices)
            return Reading(Signal.BMC, None, now, f"devices disagree: {seen}")
        reading = bmc_reading(powers.pop().value, now)
        names = ", ".join(d.name for d in devices)
        return Reading(reading.signal, reading.lost, now, f"{reading.detail} ({names})")


def _power(result: FenceResult | str) -> str:
    return result.power.value if isinstance(result, FenceResult) else "?"
