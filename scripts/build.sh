#!/usr/bin/env bash
# Configures and builds the project in $OUTBOX_BUILD_DIR (default build/). Extra args go to cmake.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

werror=OFF
[ "${CI:-}" = true ] && werror=ON
cmake -S "$OUTBOX_ROOT" -B "$OUTBOX_BUILD_DIR" -G Ninja -DOUTBOX_WERROR="${OUTBOX_WERROR:-$werror}" "$@" >/dev/null
cmake --build "$OUTBOX_BUILD_DIR" -j "$(nproc)"
