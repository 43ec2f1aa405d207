#!/usr/bin/env bash
# Fails when any tracked C++ or proto source differs from clang-format's output (.clang-format).
# With --fix, formats them in place instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=check
[[ "${1:-}" == --fix ]] && mode=fix

command -v clang-format >/dev/null || {
  echo "check-format: clang-format is not installed: run deploy/install-deps.sh" >&2
  exit 1
}

mapfile -t files < <(git ls-files --cached --others --exclude-standard \
  '*.h' '*.c' '*.cc' '*.proto' | grep -v '^tests/fuzz/corpus/' || true)
((${#files[@]})) || exit 0

if [[ $mode == fix ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  [[ -f "$f" ]] || continue
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if ((${#bad[@]})); then
  echo "check-format: these files are not clang-formatted (fix: deploy/check-format.sh --fix):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
