#!/usr/bin/env bash
# Installs `grafana-foundation-sdk` (PyPI; Grafana's own typed models of the dashboard schema, generated from it)
# into $CACHE/venv-grafana-sdk; prints the venv's `bin` directory. The dashboard's schema test
# (crates/export/tests/grafana_schema.rs) checks what `export grafana` writes against those models.
set -euo pipefail
exec "$(dirname "$0")/python-venv.sh" grafana-sdk 'grafana-foundation-sdk==1769699998!10.1.0'
