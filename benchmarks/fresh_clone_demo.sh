#!/usr/bin/env bash
# Times `make demo` on a fresh clone: set-up (venv + install) and the demo sweep separately.
# Usage: benchmarks/fresh_clone_demo.sh [CLONE_DIR]   (default /tmp/priorsweep-fresh; removed first)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:-/tmp/priorsweep-fresh}"
rm -rf "$clone"
git clone -q "$repo" "$clone"
cd "$clone"
start=$(date +%s)
make .venv/.installed > setup.log 2>&1
setup_done=$(date +%s)
make demo > demo.log 2>&1
end=$(date +%s)
echo "setup_s=$((setup_done - start)) demo_sweep_s=$((end - setup_done)) (logs: $clone/setup.log, $clone/demo.log)"
