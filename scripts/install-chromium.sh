#!/usr/bin/env bash
# Debian's Chromium for the demo's browser test (apps/cli/src/demo-e2e.int.test.ts), which drives
# it with playwright-core: nothing is downloaded but the Debian package. Idempotent: does nothing
# when the browser is there. CHROMIUM_PATH points at another Chromium binary. Every failure says
# what to do instead, naming this script.
set -euo pipefail

me="scripts/install-chromium.sh"
bin="${CHROMIUM_PATH:-/usr/lib/chromium/chromium}"
[ -x "$bin" ] && exit 0

fail() {
  echo "$me: $*" >&2
  exit 1
}

[ -z "${CHROMIUM_PATH:-}" ] || fail "CHROMIUM_PATH=$bin is not an executable"
command -v apt-get >/dev/null 2>&1 ||
  fail "$bin is missing and there is no apt-get (not Debian/Ubuntu?): install Chromium and set CHROMIUM_PATH to its binary"
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 ||
    fail "$bin is missing; not root and no sudo: run this script as root, or apt-get install chromium yourself"
  # -n: never prompt (tests run it unattended); a sudo that wants a password is reported.
  sudo -n true 2>/dev/null ||
    fail "$bin is missing and sudo needs a password: run 'sudo $me' once, or apt-get install chromium yourself"
  sudo=(sudo -n)
fi

echo "$me: installing Debian's chromium (about a minute, once)" >&2
export DEBIAN_FRONTEND=noninteractive
install_chromium() {
  "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
}
# Package lists may be missing or stale on a fresh machine: refresh them once if needed.
install_chromium || { "${sudo[@]}" apt-get update -q >&2 && install_chromium; } ||
  fail "apt-get could not install chromium (see above); install it yourself or set CHROMIUM_PATH"
[ -x "$bin" ] || fail "chromium installed but $bin is missing: set CHROMIUM_PATH to its binary"
