"""Clouds the contract suite runs against.

Each backend module exposes ``start(tmp_path: pathlib.Path, hosts: int) -> CloudUnderTest``
as a context manager (``contextlib.contextmanager``); it yields a running cloud and stops it
on exit.  Backends: ``sim`` (hastack's HTTP simulator) and ``nova_oracle`` (real Nova 34 with
Placement in one process, run from its own virtualenv ``.venv-oracle``).
"""
