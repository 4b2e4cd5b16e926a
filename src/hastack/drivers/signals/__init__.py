"""Signal sources (:class:`hastack.ports.signals.SignalSource`): independent witnesses of a
host's health.

- :mod:`.probe` — :class:`TcpProbe`, TCP connects from the controller (one selector, batched);
- :mod:`.nova` — :class:`NovaHeartbeat`, nova-compute heartbeats from the compute port;
- :mod:`.bmc` — :class:`BmcPower`, the power reading of each host's first fence level.

Drivers are imported from their modules, so that importing this package loads none of them.
"""
