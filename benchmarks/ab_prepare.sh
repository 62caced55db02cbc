#!/usr/bin/env bash
# A/B of git refs on the GPU machine, step 1 (here, where git works): export
# each ref's lqq/, cuda_templates/, benchmarks/ and tests/ into .ab/NAME (git-ignored;
# pass carry [".ab"] to the device). The device's copy of .git can be stale, so
# variants travel as trees, not refs.
# A ref may carry patches, applied in order (experiments kept as files, e.g.
# the timing-only ablations of benchmarks/experiments/ablate-*.patch):
#   benchmarks/ab_prepare.sh main=main tma=next/weight-tma
#   benchmarks/ab_prepare.sh main=4e24f90 noxor=4e24f90+benchmarks/experiments/ablate-no-xor.patch
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .ab && mkdir -p .ab
for spec in "$@"; do
  name=${spec%%=*} rest=${spec#*=}
  IFS=+ read -r ref patches <<< "$rest"
  mkdir -p ".ab/$name"
  git archive "$ref" lqq cuda_templates benchmarks tests pyproject.toml | tar -x -C ".ab/$name"
  for p in ${patches//+/ }; do
    git apply --directory=".ab/$name" "$p"
  done
  echo "$name: $(git rev-parse --short "$ref")${patches:++$patches}" | tee -a .ab/REFS
done
