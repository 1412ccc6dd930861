#!/usr/bin/env bash
# Install what is missing (Chromium, collectd and carbon-c-relay too, for the
# dashboard, the Graphite and the forwarding tests), then run the whole suite:
# the dashboard's lint and unit tests, the unit tests under trial, then
# everything under pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
SIMPLESTATS_WITH_BROWSER=1 SIMPLESTATS_WITH_COLLECTD=1 SIMPLESTATS_WITH_CARBON_RELAY=1 bash scripts/setup.sh
# The dashboard's modules: ESLint, then their unit tests under node's test runner.
(cd web && npm run --silent lint && npm test --silent)
.venv/bin/python -m twisted.trial --temp-directory=/tmp/simplestats-trial-$$ server
rm -rf /tmp/simplestats-trial-$$
exec .venv/bin/python -m pytest "$@"
