#!/usr/bin/env bash
# Install (if needed) and run the test suite. Extra arguments go to pytest.
# In CI (CI=true) tests marked `slow` are skipped unless UCVGL_RUN_SLOW=1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
