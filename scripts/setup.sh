#!/usr/bin/env bash
# Installs what SimpleStats needs into this checkout: a virtualenv in .venv with
# requirements.txt and SimpleStats itself (editable), and the dashboard's
# front-end libraries (web/package-lock.json).
# Re-running is cheap: each step is skipped while its input file is unchanged.
# On a fresh Debian machine it installs python3-venv and npm with apt-get when they
# are missing (as root; otherwise it says what to install).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ "${SIMPLESTATS_WITH_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  need_apt+=(chromium)
fi
if [ "${SIMPLESTATS_WITH_COLLECTD:-0}" = 1 ] && [ ! -x /usr/sbin/collectd ]; then
  need_apt+=(collectd-core)
fi
# The forwarding end-to-end tests (tests/test_forward_e2e.py) run a real relay.
if [ "${SIMPLESTATS_WITH_CARBON_RELAY:-0}" = 1 ] && ! command -v carbon-c-relay >/dev/null 2>&1; then
  need_apt+=(carbon-c-relay)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages first: ${need_apt[*]}" >&2
    exit 1
  fi
fi

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
want=$(stamp requirements.txt)
if [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv/.requirements-stamp
fi

# SimpleStats itself and its Python client (clients/python), editable (pyproject.toml): the checkout goes on the
# virtualenv's sys.path, so .venv/bin/trial server, .venv/bin/twist simplestats
# and .venv/bin/simplestats work from any directory without PYTHONPATH.
# Installed again when its files change or the virtualenv points elsewhere.
want=$(stamp pyproject.toml setup.py requirements.txt clients/python/pyproject.toml)
here=$(pwd -P)
installed=$(cd / && "$here/.venv/bin/python" -c 'import os, server
print(os.path.dirname(os.path.dirname(os.path.realpath(server.__file__))))' 2>/dev/null || true)
if [ "$(cat .venv/.package-stamp 2>/dev/null)" != "$want" ] || [ "$installed" != "$here" ]; then
  echo "setup: installing SimpleStats and its Python client into .venv (pip install -e . -e clients/python)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e . -e clients/python
  echo "$want" > .venv/.package-stamp
fi

want=$(stamp web/package.json web/package-lock.json)
if [ "$(cat web/node_modules/.simplestats-stamp 2>/dev/null)" != "$want" ] || [ ! -d web/static/vendor ]; then
  echo "setup: installing front-end libraries (npm ci in web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > web/node_modules/.simplestats-stamp
fi
