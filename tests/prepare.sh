#!/usr/bin/env bash
# Installs what the test suite needs besides Rust: the Python packages of the interop,
# metrics and manifest tests and of the example backends; curl, HAProxy and nginx for the
# HTTP/2 client test and the local three-instance cluster; redis-server for the shared-store
# tests (each test starts its own on a free loopback port); nginx and Caddy for the
# forward-auth tests; Node.js, the Express example's npm packages and the OpenID provider's
# (`oidc-provider`, run by the OIDC login tests); promtool (Debian's
# `prometheus` package) for the /metrics format test; Chromium and its WebDriver (Debian's
# `chromium`, `chromium-driver`) for the browser-mode test, which Selenium drives. Safe to
# run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --root-user-action=ignore -r tests/requirements.txt

missing=()
# Debian names the Node.js binary's package nodejs.
package() { if [ "$1" = node ]; then echo nodejs; else echo "$1"; fi; }
for tool in curl haproxy nginx redis-server caddy node npm; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$(package "$tool")")
done
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The browser test runs exactly these two (Debian's paths).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
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

# The Express example backend's packages, exactly as its package-lock.json pins them.
express=examples/backends/express
if ! (cd "$express" && node -e 'require.resolve("express")' >/dev/null 2>&1); then
    npm ci --prefix "$express" --no-audit --no-fund --loglevel=error >/dev/null
fi

# The OpenID provider of the OIDC login tests (tests/oidc/provider.js), pinned by its lock.
oidc=tests/oidc
if ! (cd "$oidc" && node -e 'import("oidc-provider").then(() => {}, () => process.exit(1))' >/dev/null 2>&1); then
    npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error >/dev/null
fi
