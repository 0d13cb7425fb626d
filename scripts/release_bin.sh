# Sourced by the measuring scripts: sets $bin to the latefill binary to measure,
# $LATEFILL_BIN (another build's, e.g. a saved one for an A/B) or this checkout's
# release build, made in the target directory .ci/run and the other scripts share.
#
#   source "$(dirname "$0")/release_bin.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}
if [[ -n "${LATEFILL_BIN:-}" ]]; then
  bin=$LATEFILL_BIN
else
  cargo build --release --locked -q
  bin=$CARGO_TARGET_DIR/release/latefill
fi

# Writes the default pipeline file to $1, its tables beside it (relative paths
# resolve against the file's directory).
default_pipeline() {
  "$bin" init --path "$1" >/dev/null
  sed -i 's#"latefill-demo/#"#' "$1"
}
