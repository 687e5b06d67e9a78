#!/usr/bin/env bash
# Create ./.venv and install ucvgl with its pinned torch. Idempotent: a stamp file keyed on
# pyproject.toml skips the install when nothing changed. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${UCVGL_PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${UCVGL_VENV:-.venv}
TORCH_PIN="torch==2.14.1 torchvision==0.29.1"   # never let a resolver pick a newer torch
stamp="$VENV/.ucvgl-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_PIN"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $TORCH_PIN 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import torch, torchvision" || { echo "setup: torch install failed" >&2; exit 1; }
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' $TORCH_PIN 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import ucvgl, timm, faiss, fastapi, celery" || { echo "setup: package install failed" >&2; exit 1; }
echo "$want" > "$stamp"
