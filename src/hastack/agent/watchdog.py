"""Watchdogs the agent feeds while it may run: Linux's ``/dev/watchdog``, or a software one.

:class:`DeviceWatchdog` opens a Linux watchdog device (a hardware watchdog, or the kernel's
``softdog`` module), sets its period with ``WDIOC_SETTIMEOUT`` and writes a byte per feed; the
machine resets ``timeout`` seconds after the last feed, whatever state the agent is in.

:class:`SoftWatchdog` is the fallback where no device exists: a separate process (not a
thread: a frozen or killed agent must not take it along) that runs ``action`` (by default
``systemctl reboot --force --force``) when it has not been fed for ``timeout`` seconds or when
the agent dies without disarming it.  It ignores SIGTERM and SIGINT, so stopping the agent's
service stops it only through the agent's clean :meth:`disarm`.  It is weaker than a device: a
kernel hang stops it too, but a kernel hang also stops the node from doing harm.

Both: :meth:`feed`, and :meth:`disarm` on a clean stop (the "magic close": write ``V``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)


class Watchdog(Protocol):
    def feed(self) -> None: ...

    def disarm(self) -> None: ...


class DeviceWatchdog:
    def __init__(self, path: str, timeout: int) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            raise OSError(f"cannot open watchdog {path}: {exc.strerror}") from None
        try:
            fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, struct.pack("i", timeout))
        except OSError as exc:
            os.close(self._fd)
            raise OSError(
                f"watchdog {path} refused a period of {timeout}s: {exc.strerror}"
            ) from None

    def feed(self) -> None:
        os.write(self._fd, b"\0")

    def disarm(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, b"V")
        os.close(self._fd)


class SoftWatchdog:
    def __init__(self, timeout: float, action: Sequence[str]) -> None:
        self.timeout = timeout
        self.action = tuple(action)
        cmd = [sys.executable, "-m", "hastack.agent.watchdog", str(timeout), "--", *action]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)
        assert self._proc.stdin is not None
        self._pipe = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def feed(self) -> None:
        try:
            self._pipe.write(b"\0")
            self._pipe.flush()
        except BrokenPipeError:
            log.error("the software watchdog is gone (it fired, or was killed)")

    def disarm(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._pipe.write(b"V")
            self._pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


def open_watchdog(path: str, timeout: int, soft_action: Sequence[str]) -> Watchdog:
    if path == "soft":
        return SoftWatchdog(timeout, soft_action)
    return DeviceWatchdog(path, timeout)


def _soft_main(argv: Sequence[str]) -> int:
    """The software watchdog's process: ``TIMEOUT -- ACTION...``; fed NUL bytes on stdin."""
    timeout = float(argv[0])
    action = list(argv[2:])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = sys.stdin.fileno()
    deadline = time.monotonic() + timeout
    why = f"not fed for {timeout:g}s"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, 4096)
        if not data:
            why = "the agent died without disarming it"
            break
        if b"V" in data:
            return 0
        deadline = time.monotonic() + timeout
    print(f"hastack soft watchdog: {why}: running {' '.join(action)}", file=sys.stderr, flush=True)
    return subprocess.call(action)


if __name__ == "__main__":
    sys.exit(_soft_main(sys.argv[1:]))
