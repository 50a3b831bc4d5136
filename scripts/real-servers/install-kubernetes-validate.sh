#!/usr/bin/env bash
# Installs `kubernetes-validate` (PyPI; the Kubernetes OpenAPI schemas of each release, as JSON schemas) with
# `jsonschema` and `PyYAML` into $CACHE/venv-k8s-validate; prints the venv's `bin` directory.
# The autoscaling manifests' tests (crates/plan/tests/autoscale_schemas.rs) validate what `plan --autoscale`
# renders with it: HPAs against Kubernetes' own schemas, KEDA's ScaledObject against KEDA's CRD via jsonschema.
set -euo pipefail
exec "$(dirname "$0")/python-venv.sh" k8s-validate kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3
