#!/usr/bin/env bash
# Usage: python-venv.sh NAME PIN...   Installs the pinned PyPI packages into $CACHE/venv-NAME, idempotently, and
# prints the venv's `bin` directory. The marker records the pins, so changing them reinstalls. Shared by the tools
# the tests check our output against (kubernetes-validate, HolisticTraceAnalysis).
set -euo pipefail
NAME=$1
shift
VERSIONS="$*"
# What a fresh Debian machine may lack (a dpkg check when all are there).
"$(dirname "$0")/../ensure-debian-packages.sh" python3-venv python3-pip
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
mkdir -p "$CACHE"
# Test processes may ask at the same time: one installs, the others wait and reuse it.
exec 9>"$CACHE/.lock-$NAME"
flock 9
VENV="$CACHE/venv-$NAME"
if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$VERSIONS" ]; then
  echo "$VENV/bin"
  exit 0
fi
rm -rf "$VENV" && python3 -m venv "$VENV"
# shellcheck disable=SC2086 # the pins are words
"$VENV/bin/pip" install --quiet --disable-pip-version-check $VERSIONS >&2
echo "$VERSIONS" > "$VENV/.installed"
echo "$VENV/bin"
