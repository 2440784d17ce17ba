#!/usr/bin/env bash
# Format and static checks: clang-format (must leave every file unchanged) and clang-tidy with the
# committed .clang-tidy, using the build's compile_commands.json.
#   scripts/lint.sh            check
#   scripts/lint.sh --fix      apply clang-format
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$OUTBOX_ROOT"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
clang-format --dry-run --Werror "${files[@]}"
log "clang-format: ${#files[@]} files clean"
[ -f "$OUTBOX_BUILD_DIR/compile_commands.json" ] || "$OUTBOX_ROOT/scripts/build.sh"
mapfile -t sources < <(git ls-files 'base/*.cpp' 'config/*.cpp' 'relay/*.cpp' 'dedupe/*.cpp' 'consumer_sdk/*.cpp')
clang-tidy -p "$OUTBOX_BUILD_DIR" --quiet "${sources[@]}"
log "clang-tidy: ${#sources[@]} files clean"
