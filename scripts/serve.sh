#!/usr/bin/env bash
# Install what is missing, then run the server in the foreground.
# Flags are passed to the server: bash scripts/serve.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m server.main "$@"
