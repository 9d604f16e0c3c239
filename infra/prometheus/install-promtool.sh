#!/usr/bin/env bash
# Makes `promtool` available to the infra tests (infra/tests/src/prometheus.test.ts) and prints its
# path on stdout. Idempotent: a promtool on PATH, or one this script extracted before, is used
# as is. Otherwise it fetches Debian's `prometheus` package with apt-get (running `apt-get update`
# first when the package lists lack it, which needs root) and extracts only promtool into
# node_modules/.cache/promtool/: installing the package would also set up (and, without a
# policy-rc.d, start) a Prometheus server, which the tests do not need.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$root/node_modules/.cache/promtool"

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
if [ -x "$cache/promtool" ]; then
  echo "$cache/promtool"
  exit 0
fi

fail() {
  echo "install-promtool: $*" >&2
  echo "install-promtool: install promtool yourself (Debian/Ubuntu: apt-get install prometheus;" \
    "macOS: brew install prometheus) or put it on PATH" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "promtool is not on PATH and apt-get is missing"
command -v dpkg-deb >/dev/null 2>&1 || fail "promtool is not on PATH and dpkg-deb is missing"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

if ! apt-get download prometheus >&2; then
  [ "$(id -u)" -eq 0 ] || fail "apt-get download prometheus failed; 'apt-get update' needs root"
  apt-get update -qq >&2 || fail "apt-get update failed"
  apt-get download prometheus >&2 || fail "apt-get download prometheus failed"
fi

dpkg-deb -x prometheus_*.deb extracted
[ -x extracted/usr/bin/promtool ] || fail "the prometheus package has no usr/bin/promtool"
mkdir -p "$cache"
install -m 0755 extracted/usr/bin/promtool "$cache/promtool.tmp"
mv "$cache/promtool.tmp" "$cache/promtool"
"$cache/promtool" --version >&2
echo "$cache/promtool"
