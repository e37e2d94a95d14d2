#!/usr/bin/env bash
# Builds every fuzz target of fuzz/ and runs each from its seeds for a short while
# (docs/FUZZING.md). CI calls it with the defaults (5 s a target); for the long runs:
#   OFFPAY_FUZZ_SECONDS=600 scripts/fuzz.sh [TARGET...]
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz when missing.
# A target that crashes leaves its input in fuzz/artifacts/TARGET/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds_each="${OFFPAY_FUZZ_SECONDS:-5}"
# libFuzzer's own bound on one input's size, above the largest seed (an envelope file, 8 KiB).
input_bytes_max="${OFFPAY_FUZZ_INPUT_BYTES_MAX:-16384}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> fuzz: the nightly toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "==> fuzz: building ${#targets[@]} targets"
cargo +nightly fuzz build

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="fuzz/artifacts/$target/last-run.log"
  echo "==> fuzz: $target for ${seconds_each}s"
  # The corpus grows in fuzz/corpus/TARGET (not committed); the committed seeds are only read.
  if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds_each" -max_len="$input_bytes_max" -print_final_stats=1 \
      >"$log" 2>&1; then
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "    ${executions:-?} executions, ${coverage:-cov: ?}, no crash"
  else
    echo "    FAILED: see $log and fuzz/artifacts/$target/" >&2
    grep -E "panicked at|assertion|ERROR: libFuzzer|SUMMARY" "$log" | head -n 5 >&2 || true
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "==> fuzz: ${#targets[@]} passed, 0 failed"
