#!/usr/bin/env bash
# The project's test command (the README's, and CI's): every crate's unit tests,
# integration tests and doc tests, with the S3 and Azure emulators running on
# loopback (scripts/with-emulators.sh installs them on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-emulators.sh cargo test --workspace --locked "$@"
