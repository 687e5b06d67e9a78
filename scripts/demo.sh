#!/usr/bin/env bash
# Install (if needed) and run the main job: generate a synthetic cross-view world and run
# the full unsupervised pipeline on it with the embedded defaults. Extra args go to `ucvgl demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/ucvgl demo "$@"
