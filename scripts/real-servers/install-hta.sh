#!/usr/bin/env bash
# Installs Meta's HolisticTraceAnalysis (PyPI `HolisticTraceAnalysis` 0.5.0, with the pandas and numpy it was
# checked with) into $CACHE/venv-hta; prints the venv's `bin` directory. The trace tests
# (crates/trace/tests/hta_agreement.rs) run HTA's analyses on every trace fixture and compare ours with them.
set -euo pipefail
exec "$(dirname "$0")/python-venv.sh" hta HolisticTraceAnalysis==0.5.0 pandas==3.1.1 numpy==2.4.6
