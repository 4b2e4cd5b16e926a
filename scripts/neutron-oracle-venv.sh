#!/usr/bin/env bash
# Create (or refresh) the real-Neutron oracle virtualenv at <repo>/.venv-neutron-oracle.
#
# The oracle runs the real OpenStack Neutron server (API, ML2 + L3 plugins, agent
# schedulers, RPC over fake://) in one process (tests/oracle/neutron_server.py), with fake
# agents heartbeating through Neutron's real agent RPC. It needs its own virtualenv:
# neutron pins its own OpenStack library stack (separate from .venv-oracle's nova).
#
# Idempotent: a stamp file records the hash of tests/oracle/neutron-requirements.txt and the
# interpreter; when both match, this exits at once. Safe to run concurrently (flock).
# Needs only PyPI (and, on a bare Debian 12 without python3-venv, Debian's packages).
#
# Environment: PYTHON (default python3, must be >= 3.11), NEUTRON_ORACLE_VENV (default
# <repo>/.venv-neutron-oracle).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$repo/tests/oracle/neutron-requirements.txt"
venv="${NEUTRON_ORACLE_VENV:-$repo/.venv-neutron-oracle}"
python="${PYTHON:-python3}"
stamp="$venv/.hastack-neutron-oracle-stamp"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "neutron-oracle-venv: $python not found" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "neutron-oracle-venv: $python is $("$python" -V 2>&1); neutron 29 needs Python >= 3.11" >&2
    exit 1
fi

want="$( { sha256sum "$req" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

# The lock lives outside the work tree (and outside the venv, which may be rebuilt).
lock="${TMPDIR:-/tmp}/hastack-neutron-oracle-venv-$(printf '%s' "$venv" | sha256sum | cut -c1-16).lock"
exec 9>"$lock"
flock 9
# Another run may have finished while we waited for the lock.
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

# Debian's python3 ships venv without ensurepip unless python3-venv is installed.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "neutron-oracle-venv: installing python3-venv" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "neutron-oracle-venv: $python lacks venv/ensurepip (install python3-venv)" >&2
        exit 1
    fi
fi

start=$SECONDS
rm -f "$stamp"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
echo "neutron-oracle-venv: installing $(grep -c '==' "$req") pinned packages into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
# Smoke: the oracle's imports work.
"$venv/bin/python" -c 'import neutron.server.api, neutron.plugins.ml2.plugin
import neutron.services.l3_router.l3_router_plugin, neutron.db.migration.models.head
import werkzeug'
echo "$want" >"$stamp"
echo "neutron-oracle-venv: ready in $((SECONDS - start)) s" >&2
