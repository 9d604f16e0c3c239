#!/usr/bin/env bash
# Makes `haproxy` available to the tests that run a real balancer (ensureHaproxy in
# libs/testing/src/tools.ts: the rolling-restart test, infra/tests) and prints its path on stdout. Idempotent: a haproxy on PATH,
# or one this script extracted before, is used as is. Otherwise it fetches Debian's `haproxy`
# package, and the libraries it needs that are not installed, with `apt-get download` (running
# `apt-get update` first when the package lists lack them, which needs root) and extracts them
# into node_modules/.cache/haproxy/: installing the package would also set up (and, without a
# policy-rc.d, start) a system HAProxy service, which the tests do not need. The printed path is
# a wrapper that points the dynamic loader at the extracted libraries and execs the binary (same
# process id, so signals reach HAProxy itself).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$root/node_modules/.cache/haproxy"

if command -v haproxy >/dev/null 2>&1; then
  command -v haproxy
  exit 0
fi
if [ -x "$cache/haproxy" ]; then
  echo "$cache/haproxy"
  exit 0
fi

fail() {
  echo "install-haproxy: $*" >&2
  echo "install-haproxy: install HAProxy 2.4 or newer yourself (Debian/Ubuntu: apt-get install" \
    "haproxy; macOS: brew install haproxy) or put it on PATH" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "haproxy is not on PATH and apt-get is missing"
command -v dpkg-deb >/dev/null 2>&1 || fail "haproxy is not on PATH and dpkg-deb is missing"

# The packages apt would install for haproxy on this system: haproxy and its missing libraries.
packages() {
  apt-get install --simulate --no-install-recommends haproxy 2>/dev/null |
    awk '$1 == "Inst" { print $2 }'
}
wanted="$(packages)"
if ! printf '%s\n' "$wanted" | grep -qx haproxy; then
  [ "$(id -u)" -eq 0 ] || fail "apt-get knows no haproxy package; 'apt-get update' needs root"
  apt-get update -qq >&2 || fail "apt-get update failed"
  wanted="$(packages)"
  printf '%s\n' "$wanted" | grep -qx haproxy || fail "apt-get knows no haproxy package"
fi

mkdir -p "$(dirname "$cache")"
tmp="$(mktemp -d "$cache.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  # shellcheck disable=SC2086 # one package name per word
  apt-get download $wanted >&2 || fail "apt-get download $(echo $wanted) failed"
  for deb in ./*.deb; do dpkg-deb -x "$deb" root; done
)
[ -x "$tmp/root/usr/sbin/haproxy" ] || fail "the haproxy package has no usr/sbin/haproxy"

libs="$(find "$tmp/root" -name '*.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')"
missing="$(LD_LIBRARY_PATH="$libs" ldd "$tmp/root/usr/sbin/haproxy" | grep 'not found' || true)"
[ -z "$missing" ] || fail "libraries missing after extraction: $missing"

# Library directories relative to the wrapper, so the cache can move with the checkout.
rel="$(find "$tmp/root" -name '*.so*' -printf '%h\n' 2>/dev/null | sort -u |
  sed "s|^$tmp/|\$here/|" | tr '\n' ':')"
cat >"$tmp/haproxy" <<WRAPPER
#!/bin/sh
# Extracted by infra/haproxy/install-haproxy.sh from Debian's haproxy package.
here="\$(cd "\$(dirname "\$0")" && pwd)"
LD_LIBRARY_PATH="$rel\${LD_LIBRARY_PATH:-}" exec "\$here/root/usr/sbin/haproxy" "\$@"
WRAPPER
chmod 0755 "$tmp/haproxy"
rm -f "$tmp"/*.deb
"$tmp/haproxy" -v >&2 || fail "the extracted haproxy does not run"

# Another run may have finished first (tests start in parallel): keep whichever landed.
if mv -T "$tmp" "$cache" 2>/dev/null; then trap - EXIT; fi
[ -x "$cache/haproxy" ] || fail "could not move the extraction into $cache"
echo "$cache/haproxy"
