# Sourced by the scripts that time latefill on S3 with a latency per request:
#
#   source scripts/slow_s3.sh
#   start_slow_s3 0.02    # seconds a request
#
# starts scripts/latency_proxy.py in front of moto ($AWS_ENDPOINT_URL, from
# scripts/with-emulators.sh), sets $slow_s3 to the proxy's address and $work to a new
# directory, and stops the one and removes the other when the script exits.
start_slow_s3() {
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 scripts/latency_proxy.py "$port" "${AWS_ENDPOINT_URL##*:}" "$1" &
    slow_s3_proxy=$!
    work=$(mktemp -d)
    trap 'kill $slow_s3_proxy 2>/dev/null; rm -rf "$work"' EXIT
    sleep 1
    slow_s3="http://127.0.0.1:$port"
}
