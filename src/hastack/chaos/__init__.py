"""Proving safety: seeded fault campaigns against the real engine in virtual time, with
invariants checked after every tick (docs/safety.md)."""
