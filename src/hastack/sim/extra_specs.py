"""Flavor extra-spec validation as Nova does it from microversion 2.86.

A small subset of Nova's registry (``nova/api/validation/extra_specs``): the specs an HA operator
is likely to set, with Nova's messages.  As in Nova, a key in a namespace Nova owns but does not
know is refused; keys in other namespaces (``hastack:...``) pass.
"""

from __future__ import annotations

import re

from hastack.sim.errors import BadRequest

_BOOL = ("1", "0", "t", "f", "true", "false", "on", "off", "y", "n", "yes", "no")
# name -> ("enum", values) | ("int", min) | ("bool", None)
_SPECS: dict[str, tuple[str, object]] = {
    "hw:cpu_policy": ("enum", ("dedicated", "shared", "mixed")),
    "hw:cpu_thread_policy": ("enum", ("prefer", "isolate", "require")),
    "hw:emulator_threads_policy": ("enum", ("share", "isolate")),
    "hw:mem_page_size": ("str", None),
    "hw:numa_nodes": ("int", 1),
    "hw:cpu_sockets": ("int", 1),
    "hw:cpu_cores": ("int", 1),
    "hw:cpu_threads": ("int", 1),
    "hw:watchdog_action": ("enum", ("none", "pause", "poweroff", "reset", "disabled")),
    "hw_rng:allowed": ("bool", None),
    "hw:boot_menu": ("bool", None),
    "hw:hide_hypervisor_id": ("bool", None),
}
_PATTERNS: tuple[tuple[str, tuple[str, object]], ...] = (
    (r"trait(\d+)?:[A-Z0-9_]+", ("enum", ("required", "forbidden"))),
    (r"resources(\d+)?:[A-Z0-9_]+", ("int", 0)),
    (r"aggregate_instance_extra_specs:.+", ("str", None)),
    (r"capabilities:.+", ("str", None)),
    (r"quota:.+", ("str", None)),
    (r"os:.+", ("str", None)),
    (r"hw_video:.+", ("str", None)),
    (r"pci_passthrough:.+", ("str", None)),
    (r"vmware:.+", ("str", None)),
    (r"accel:.+", ("str", None)),
)
_NAMESPACES = ("hw", "hw_rng", "hw_video", "os", "trait", "resources", "quota", "capabilities")


def validate(name: str, value: str) -> None:
    """Raise BadRequest with Nova's message when ``name=value`` is not a valid extra spec."""
    rule = _SPECS.get(name)
    if rule is None:
        for pattern, candidate in _PATTERNS:
            if re.fullmatch(pattern, name):
                rule = candidate
                break
    if rule is None:
        namespace = name.split(":", 1)[0] if ":" in name else None
        if namespace is not None and re.sub(r"\d+$", "", namespace) in _NAMESPACES:
            raise BadRequest(
                f"Validation failed; extra spec '{name}' does not appear to be a valid extra spec."
            )
        return
    kind, arg = rule
    if kind == "enum" and isinstance(arg, tuple) and value not in arg:
        raise BadRequest(f"Validation failed; '{value}' is not one of: {', '.join(arg)}.")
    if kind == "bool" and value.lower() not in _BOOL:
        raise BadRequest(f"Validation failed; '{value}' is not a valid boolean-like value.")
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise BadRequest(
                f"Validation failed; '{value}' is not a valid integer value."
            ) from None
        if isinstance(arg, int) and number < arg:
            raise BadRequest(f"Validation failed; '{value}' is less than the min value of '{arg}'.")
