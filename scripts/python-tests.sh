#!/usr/bin/env bash
# The Python package's tests (python/tests), run by scripts/test.sh after the Rust
# tests:
#
#   bash scripts/python-tests.sh [pytest arguments]
#
# - A venv outside the clone, $LATEFILL_TOOLS_DIR/venv-python (default
#   ~/.cache/latefill-tools), with python/requirements-dev.txt installed; made again
#   only when that file changes.
# - The extension built by `maturin develop` in the dev profile, into the Rust target
#   directory the cargo tests use ($CARGO_TARGET_DIR): it reuses their compiled
#   dependencies, so the build takes seconds after `cargo test`. Built with the
#   `failpoints` feature, as the Rust tests' builds are.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${LATEFILL_TOOLS_DIR:-$HOME/.cache/latefill-tools}"
venv="$tools/venv-python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"

requirements=python/requirements-dev.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "python-tests: installing $requirements into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
fi

# maturin installs into the venv it runs in.
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
echo "python-tests: maturin develop (python/)" >&2
(cd python && maturin develop --quiet --locked --features failpoints 2>&1 | grep -v '^Ignoring ' >&2)
exec python -m pytest python/tests -q "$@"
