#!/usr/bin/env bash
# Installs `kubernetes-validate` (PyPI; the Kubernetes OpenAPI schemas of each release, as JSON schemas) with
# `jsonschema` and `PyYAML` into $CACHE/venv-k8s-validate, idempotently; prints the venv's `bin` directory.
# The autoscaling manifests' tests (crates/plan/tests/autoscale_schemas.rs) validate what `plan --autoscale`
# renders with it: HPAs against Kubernetes' own schemas, KEDA's ScaledObject against KEDA's CRD via jsonschema.
set -euo pipefail
# What a fresh Debian machine may lack (a dpkg check when all are there).
"$(dirname "$0")/../ensure-debian-packages.sh" python3-venv python3-pip
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
mkdir -p "$CACHE"
# Test processes may ask at the same time: one installs, the others wait and reuse it.
exec 9>"$CACHE/.lock-k8s-validate"
flock 9
VERSIONS="kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3"
VENV="$CACHE/venv-k8s-validate"
# The marker records the pins, so changing them here reinstalls.
if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$VERSIONS" ]; then
  echo "$VENV/bin"
  exit 0
fi
rm -rf "$VENV" && python3 -m venv "$VENV"
# shellcheck disable=SC2086 # the pins are words
"$VENV/bin/pip" install --quiet --disable-pip-version-check $VERSIONS >&2
echo "$VERSIONS" > "$VENV/.installed"
echo "$VENV/bin"
