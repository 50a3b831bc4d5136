#!/usr/bin/env bash
# Makes the project's tiny random-weight model (make_tiny_model.py) into the cache, once per version of the
# generator, its tokenizer and its arguments; prints the model directory (tiny-llama.gguf and hf/).
# Usage: tiny-model.sh [make_tiny_model.py arguments except --out]
set -euo pipefail
# What a fresh Debian machine may lack (a dpkg check when all are there).
"$(dirname "$0")/../ensure-debian-packages.sh" python3-venv python3-pip
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$CACHE/models"
exec 9>"$CACHE/.lock-tiny-model"
flock 9
KEY=$( (cat "$HERE/make_tiny_model.py" "$HERE/../../fixtures/tokenizers/tiny-bpe/tokenizer.json"; echo "$*") \
  | sha256sum | cut -c1-16)
OUT="$CACHE/models/tiny-$KEY"
if [ ! -f "$OUT/.done" ]; then
  VENV="$CACHE/venv-gguf"
  if [ ! -f "$VENV/.installed" ]; then
    rm -rf "$VENV" && python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "numpy>=1.26" "gguf==0.19.0" >&2
    touch "$VENV/.installed"
  fi
  rm -rf "$OUT" && "$VENV/bin/python" "$HERE/make_tiny_model.py" --out "$OUT" "$@" >&2
  touch "$OUT/.done"
fi
echo "$OUT"
