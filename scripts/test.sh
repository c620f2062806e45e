#!/usr/bin/env bash
# The project's test command: sets up what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-pdfium.sh
export DSOCR_SHARED_DIR="${DSOCR_SHARED_DIR:-$(cd .. && pwd)/shared}"
export DSOCR_PDFIUM_DIR="${DSOCR_PDFIUM_DIR:-$HOME/.cache/deepseek-ocr/pdfium}"
cargo test "$@"
