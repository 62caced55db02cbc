#!/usr/bin/env bash
# A/B of git refs on the GPU machine, step 1 (here, where git works): export
# each ref's lqq/, cuda_templates/, benchmarks/ and tests/ into .ab/NAME (git-ignored;
# pass carry [".ab"] to the device). The device's copy of .git can be stale, so
# variants travel as trees, not refs.
#   benchmarks/ab_prepare.sh main=main tma=next/weight-tma
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .ab && mkdir -p .ab
for spec in "$@"; do
  name=${spec%%=*} ref=${spec#*=}
  mkdir -p ".ab/$name"
  git archive "$ref" lqq cuda_templates benchmarks tests pyproject.toml | tar -x -C ".ab/$name"
  echo "$name: $(git rev-parse --short "$ref")" | tee -a .ab/REFS
done
