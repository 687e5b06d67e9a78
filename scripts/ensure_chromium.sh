#!/usr/bin/env bash
# Make Debian's chromium available at /usr/bin/chromium for the dashboard's browser tests
# (tests/api/test_dashboard_browser.py, marker `browser`). Installs it with apt-get when it
# is missing. Never fails the run: without apt-get, root or a package mirror the browser
# tests skip themselves with a clear reason. Usage: scripts/ensure_chromium.sh
set -u
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: apt-get not available; the browser tests will be skipped" >&2
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "ensure_chromium: not root and no passwordless sudo; the browser tests will be skipped" >&2
    exit 0
  fi
fi
LIMIT=()
if command -v timeout >/dev/null 2>&1; then
  LIMIT=(timeout 900)
fi
export DEBIAN_FRONTEND=noninteractive
echo "ensure_chromium: installing Debian's chromium (apt-get)" >&2
if ! "${LIMIT[@]}" "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1; then
  echo "ensure_chromium: apt-get update failed; trying the cached package lists" >&2
fi
if ! "${LIMIT[@]}" "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium \
  >/dev/null 2>&1; then
  echo "ensure_chromium: could not install chromium; the browser tests will be skipped" >&2
  exit 0
fi
if [ -x "$CHROMIUM" ]; then
  echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null || echo installed)" >&2
else
  echo "ensure_chromium: chromium installed but $CHROMIUM is missing; browser tests will skip" >&2
fi
exit 0
