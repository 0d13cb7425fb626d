#!/usr/bin/env bash
# The project's test command (the README's, and CI's): every crate's unit tests,
# integration tests and doc tests, with the S3 and Azure emulators running on
# loopback (scripts/with-emulators.sh installs them on first use), and headless
# Chromium for the status page's test (installed from Debian's packages when missing);
# then the Python package's tests (scripts/python-tests.sh). Arguments go to
# `cargo test`; LATEFILL_PYTHON_TESTS=0 leaves the Python tests out.
set -euo pipefail
cd "$(dirname "$0")/.."
# The processes the tests start keep the log files they read on disk (the log cache):
# in a directory of the run's own, not the user's cache.
if [[ -z "${LATEFILL_CACHE_DIR:-}" ]]; then
    LATEFILL_CACHE_DIR="$(mktemp -d)"
    export LATEFILL_CACHE_DIR
    trap 'rm -rf "$LATEFILL_CACHE_DIR"' EXIT
fi
if [[ -z "${LATEFILL_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null; then
    echo "test.sh: installing Debian's chromium for the status page's browser test" >&2
    sudo_=""
    [[ $(id -u) -eq 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >&2
fi
scripts/with-emulators.sh cargo test --workspace --locked "$@"
if [[ "${LATEFILL_PYTHON_TESTS:-1}" != 0 ]]; then
    bash scripts/python-tests.sh
fi
