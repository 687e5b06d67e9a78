#!/usr/bin/env bash
# Install (if needed) and run the test suite: the one test command (CI runs exactly this,
# through .ci/run). Extra arguments go to pytest.
# - Python deps: scripts/setup.sh (./.venv).
# - Chromium for the dashboard's browser tests: scripts/ensure_chromium.sh finds Debian's
#   /usr/bin/chromium or installs it with apt-get; where it cannot (no apt-get, not root and
#   no passwordless sudo, no mirror) this script says so and those tests SKIP with the reason.
#   UCVGL_NO_CHROMIUM_INSTALL=1 only looks for it, never installs.
# In CI (CI=true) tests marked `slow` are skipped unless UCVGL_RUN_SLOW=1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CHROMIUM=/usr/bin/chromium
if [ "${UCVGL_NO_CHROMIUM_INSTALL:-0}" != 1 ]; then
  scripts/ensure_chromium.sh
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "test.sh: no chromium at $CHROMIUM: the dashboard browser tests" \
    "(tests/api/test_dashboard_browser.py, marker 'browser') will be SKIPPED;" \
    "install Debian's chromium (scripts/ensure_chromium.sh as root) to run them" >&2
fi
exec .venv/bin/python -m pytest "$@"
