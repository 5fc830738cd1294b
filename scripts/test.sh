#!/usr/bin/env bash
# The project's test command (README): everything a fresh machine needs, then every test.
#   1. the Rust toolchain's fmt/clippy components (rustup is on the machine image);
#   2. cargo test: unit, property and in-process integration tests (all on 127.0.0.1);
#   3. the real-engine checks: vLLM for CPU with a tiny locally built model (installs itself).
# SERVEBENCH_SKIP_REAL_ENGINES=1 skips step 3 (for a quick local loop; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The HTML report is checked in headless Chromium (tests/report_html.rs skips, saying why,
# where it cannot be installed).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing chromium (Debian package) for the HTML report test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "   could not install chromium; the HTML report test will be skipped"
  fi
fi

echo "== cargo test"
cargo test --all-targets 2>&1

if [[ "${SERVEBENCH_SKIP_REAL_ENGINES:-0}" == "1" ]]; then
  echo "== real engines: skipped (SERVEBENCH_SKIP_REAL_ENGINES=1)"
  exit 0
fi

for check in scripts/real-engines/check_*.sh; do
  [[ -e "$check" ]] || continue
  echo "== real engine: $check"
  bash "$check"
done
