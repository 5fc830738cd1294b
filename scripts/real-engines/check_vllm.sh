#!/usr/bin/env bash
# The real vLLM check as scripts/test.sh runs it (it runs every scripts/real-engines/check_*.sh).
# Right after `cargo test --all-targets`, target/debug/servebench is fresh, so this builds the
# dev profile (seconds) instead of a release build (minutes); the checks judge correctness and
# causality, not client speed. Set SERVEBENCH_PROFILE=release to check the release binary.
set -euo pipefail
SERVEBENCH_PROFILE=${SERVEBENCH_PROFILE:-dev} exec bash "$(dirname "${BASH_SOURCE[0]}")/../ci/vllm_check.sh" "$@"
