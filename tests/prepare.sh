#!/usr/bin/env bash
# Installs what the test suite needs besides Rust: the Python packages of the interop,
# metrics and manifest tests; curl, HAProxy and nginx for the HTTP/2 client test and the
# local three-instance cluster; redis-server for the shared-store tests (each test starts
# its own on a free loopback port); nginx and Caddy for the forward-auth tests. Safe to run
# again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --root-user-action=ignore -r tests/requirements.txt

missing=()
for tool in curl haproxy nginx redis-server caddy; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "tests need: ${missing[*]} (install them with your package manager)" >&2
        exit 1
    fi
fi
