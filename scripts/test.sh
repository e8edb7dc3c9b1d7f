#!/usr/bin/env bash
# The whole test suite: lint, then pytest (unit, integration with the real tansu broker
# and the real chdb engine, end-to-end). Called by `make test` and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
"$VENV/bin/ruff" check tickcast dataflows models api sql tests bench scripts
"$VENV/bin/ruff" format --check --quiet .
"$VENV/bin/mypy"  # the packages and rules in pyproject.toml [tool.mypy]
# The dashboard tests drive Debian's Chromium (a browser download at test time does not work here).
bash scripts/ensure-chromium.sh
# The alerting tests run Debian's promtool and a real Prometheus (package `prometheus`).
bash scripts/ensure-prometheus.sh
# --tb=native: CPython 3.11.7 can fail in ast.parse while pytest renders a failure's source
# ("AST constructor recursion depth mismatch"), turning one failure into an INTERNALERROR.
exec "$VENV/bin/python" -m pytest --tb=native "$@"
