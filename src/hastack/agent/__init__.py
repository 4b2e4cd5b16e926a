"""``hastack agent``: the node agent (heartbeats, local checks, optional self-fencing)."""
