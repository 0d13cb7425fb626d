#!/usr/bin/env bash
# The project's test command (the README's, and CI's): every crate's unit tests,
# integration tests and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
