"""Store drivers: sqlite (embedded) now; etcd joins with the "own HA" work."""
