#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and stops at the first crash.
#
#   fuzz/run.sh                  # 60 s per target
#   FUZZ_SECONDS=10 fuzz/run.sh  # shorter
#   fuzz/run.sh verify routing   # only these targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only compiler
# flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. FUZZ_SANITIZER picks the
# sanitizer (default: address; `none` builds and runs faster). FUZZ_BUILD_JOBS bounds the
# build's parallelism (default 2).
#
# A crash leaves its input in fuzz/artifacts/<target>/; turn it into a regression test in
# the test suite before fixing it.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${FUZZ_BUILD_JOBS:-2}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(bearer routing verify config claim_headers)
fi

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    # New inputs go to corpus/ (ignored by git); seeds/ holds a few committed starting points.
    cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
echo "== all targets ran ${seconds}s each without a crash"
