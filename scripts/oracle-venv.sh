#!/usr/bin/env bash
# Create (or refresh) a test oracle's virtualenv:
#   scripts/oracle-venv.sh nova      -> <repo>/.venv-oracle          (real Nova 34 + Placement 16)
#   scripts/oracle-venv.sh neutron   -> <repo>/.venv-neutron-oracle  (real Neutron 29)
#
# The oracles run real OpenStack services in one process (tests/oracle/nova_server.py,
# tests/oracle/neutron_server.py) so the contract suite can hold the simulator to real
# behaviour. Each needs its own virtualenv: nova and neutron each pin half of the OpenStack
# library stack.
#
# Idempotent: a stamp file records the hash of the oracle's requirements file and the
# Python version; when they match nothing is done. Concurrent runs serialize on a lock.
#
# Environment: PYTHON (default python3, must be >= 3.11), ORACLE_VENV / NEUTRON_ORACLE_VENV
# (the venv paths).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
which="${1:-nova}"
case "$which" in
    nova)
        req="$repo/tests/oracle/requirements.txt"
        venv="${ORACLE_VENV:-$repo/.venv-oracle}"
        stamp="$venv/.hastack-oracle-stamp"
        ;;
    neutron)
        req="$repo/tests/oracle/neutron-requirements.txt"
        venv="${NEUTRON_ORACLE_VENV:-$repo/.venv-neutron-oracle}"
        stamp="$venv/.hastack-neutron-oracle-stamp"
        ;;
    *)
        echo "usage: $0 nova|neutron" >&2
        exit 2
        ;;
esac
me="$which-oracle-venv"
python="${PYTHON:-python3}"

smoke() {  # the oracle's imports work, with the start-up settings the oracle uses
    if [[ "$which" == nova ]]; then
        OS_NOVA_DISABLE_EVENTLET_PATCHING=1 "$venv/bin/python" -c \
            'from nova import monkey_patch; monkey_patch.patch("threading")
import nova.compute.manager, nova.tests.fixtures, placement.deploy, werkzeug'
    else
        "$venv/bin/python" -c 'import neutron.server.api, neutron.plugins.ml2.plugin
import neutron.services.l3_router.l3_router_plugin, neutron.db.migration.models.head
import werkzeug'
    fi
}

if ! command -v "$python" >/dev/null 2>&1; then
    echo "$me: $python not found" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "$me: $python is $("$python" -V 2>&1); the oracles need Python >= 3.11" >&2
    exit 1
fi

want="$( { sha256sum "$req" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

# The lock lives outside the work tree (and outside the venv, which may be rebuilt).
lock="${TMPDIR:-/tmp}/hastack-$me-$(printf '%s' "$venv" | sha256sum | cut -c1-16).lock"
exec 9>"$lock"
flock 9
# Another run may have finished while we waited for the lock.
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

# Debian's python3 ships venv without ensurepip unless python3-venv is installed.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "$me: installing python3-venv" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "$me: $python lacks venv/ensurepip (install python3-venv)" >&2
        exit 1
    fi
fi

start=$SECONDS
rm -f "$stamp"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
echo "$me: installing $(grep -c '==' "$req") pinned packages into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
smoke
echo "$want" >"$stamp"
echo "$me: ready in $((SECONDS - start)) s" >&2
