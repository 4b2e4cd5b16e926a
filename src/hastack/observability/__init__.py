"""What a controller tells the outside about itself: Prometheus metrics and structured logs.

Both are engine listeners (:attr:`hastack.engine.engine.Engine.listeners`): they run on the
engine's thread right after each tick and only read what the tick left behind.
"""

from hastack.observability.logs import TickLogger, setup_logging
from hastack.observability.metrics import Metrics

__all__ = ["Metrics", "TickLogger", "setup_logging"]
