#!/usr/bin/env bash
# Installs the Debian packages named that are not installed yet (prometheus, chromium, the build and Python tools),
# so the README's test command passes on a fresh machine. Idempotent; concurrent callers wait on one lock.
set -euo pipefail

missing() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

[ -z "$(missing "$@")" ] && exit 0
cache="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
mkdir -p "$cache"
exec 9>"$cache/apt.lock"
flock 9
# Another caller may have installed them while this one waited.
mapfile -t todo < <(missing "$@")
[ ${#todo[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${todo[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${todo[@]}" >&2
