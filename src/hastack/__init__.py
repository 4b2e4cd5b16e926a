"""hastack: high availability for OpenStack."""

__version__ = "0.1.0"
