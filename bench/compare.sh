#!/usr/bin/env bash
# Before and after in one run: bench/signing (two alternating rounds) and bench/pipeline
# for two revisions of this repository, each from a worktree of its own with the
# project's .venv.
#
#     bash bench/compare.sh BEFORE AFTER [--invoices 1500]
#
# e.g. `bash bench/compare.sh e2913482 main`. Worktrees go to $COMPARE_DIR (default
# /tmp/fiscobridge-compare) and are left for a rerun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
before=${1:?give the revision before}; after=${2:?give the revision after}; shift 2
invoices=1500
if [[ ${1:-} == --invoices ]]; then invoices=${2:?}; fi
dir=${COMPARE_DIR:-/tmp/fiscobridge-compare}
mkdir -p "$dir"
# The worktrees have no ../shared beside them: the CIS sandbox reads this checkout's.
export FISCOBRIDGE_CIS_SPEC_DIR=${FISCOBRIDGE_CIS_SPEC_DIR:-$(cd "$root/.." && pwd)/shared/specs/hr-cis}
tree() {  # the worktree of revision $1, at that revision
  local path="$dir/$(git -C "$root" rev-parse --short "$1")"
  if [[ ! -d $path ]]; then
    git -C "$root" worktree add -f --detach "$path" "$1" >/dev/null
    ln -sfn "$root/.venv" "$path/.venv"
  fi
  echo "$path"
}
a=$(tree "$before"); b=$(tree "$after")
run() {  # run the module $2... in worktree $1
  local path=$1; shift
  (cd "$path" && PYTHONPATH="$path" "$root/.venv/bin/python" -m "$@")
}
for round in 1 2; do
  for path in "$a" "$b"; do
    echo "=== signing $(basename "$path") round $round: $(git -C "$path" log --oneline -1 | cut -c1-60)"
    run "$path" bench.signing --seconds 5 2>&1 | tail -7
  done
done
for path in "$a" "$b"; do
  echo "=== pipeline $(basename "$path"): $(git -C "$path" log --oneline -1 | cut -c1-60)"
  run "$path" bench.pipeline --invoices "$invoices" 2>&1 \
    | grep -v -i -E "aiokafka|warning|unable to|^\s*(File|raise|await)|Traceback" | tail -45
done
