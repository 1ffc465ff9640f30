#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes coverage-guided with AFL++: the message envelope, the
# Twilio webhook form and the SNS message (common/fuzz/, the same checks as
# common/tests/parsers_fuzz.rs), each from its seed corpus in common/tests/corpus/. Installs
# cargo-afl from crates.io once (it builds AFL++ itself). Not part of .ci/test: the
# instrumented build of the dependency tree and a useful run take longer than CI allows on two
# shared cores; the property tests of the same checks run there instead.
#
# Usage: fuzz.sh [TARGET ...]   (default: envelope twilio_form sns); exit 1 if any crashed
#
# Environment (defaults in brackets):
#   ENGAGENINJA_FUZZ_SECONDS  [300]  how long each target runs
#   ENGAGENINJA_FUZZ_OUT      [target/fuzz]  AFL++'s output (queue, crashes, stats) per target
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${ENGAGENINJA_FUZZ_SECONDS:-300}"
OUT="${ENGAGENINJA_FUZZ_OUT:-target/fuzz}"
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(envelope twilio_form sns)

say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! cargo afl --version >/dev/null 2>&1; then
  say "installing cargo-afl (once)"
  cargo install --locked cargo-afl
fi
say "building the targets with AFL++ instrumentation"
cargo afl build --release --manifest-path common/fuzz/Cargo.toml
status=0
for target in "${TARGETS[@]}"; do
  out="$OUT/$target"
  rm -rf "$out"
  mkdir -p "$out"
  say "$target: ${SECONDS_EACH}s from common/tests/corpus/$target"
  AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1 \
    cargo afl fuzz -V "$SECONDS_EACH" -i "common/tests/corpus/$target" -o "$out" \
    "common/fuzz/target/release/$target" >"$out/afl.log" 2>&1 || { tail -n 20 "$out/afl.log" >&2; status=1; }
  stats="$out/default/fuzzer_stats"
  if [[ -f "$stats" ]]; then
    awk -F' *: *' -v target="$target" '
      $1 == "execs_done" { execs = $2 } $1 == "corpus_count" { corpus = $2 }
      $1 == "bitmap_cvg" { coverage = $2 } $1 == "saved_crashes" { crashes = $2 } $1 == "saved_hangs" { hangs = $2 }
      END { printf "fuzz: %s: %s executions, %s inputs in the queue, %s of the map covered, %s crashes, %s hangs\n",
                   target, execs, corpus, coverage, crashes, hangs }' "$stats" >&2
  fi
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  if ((crashes > 0)); then
    say "$target crashed on $crashes inputs: $out/default/crashes (replay: common/fuzz/target/release/$target < FILE)"
    status=1
  fi
done
exit "$status"
