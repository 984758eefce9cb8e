#!/usr/bin/env bash
# Builds and runs one libFuzzer target: tests/fuzz/run.sh TARGET [RUNS] [extra libFuzzer flags...]
#   TARGET is the NAME of tests/fuzz/fuzz_NAME.c (an LLVMFuzzerTestOneInput over the C core).
#   Needs clang (apt-get install clang). The core is compiled with ASan+UBSan; corpus in tests/fuzz/corpus_NAME.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:?usage: tests/fuzz/run.sh TARGET [RUNS]}
runs=${2:-1000000}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p tests/fuzz/bin "tests/fuzz/corpus_$target"
srcs=$(find csrc -name '*.c' -not -path 'csrc/python/*' -not -path 'csrc/testing/*')
flags="-O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc $(pkg-config --cflags libavcodec libavformat libswscale libavutil openblas)"
libs="$(pkg-config --libs libavcodec libavformat libswscale libavutil openblas) -lm -fopenmp"
clang $flags -D_GNU_SOURCE -fopenmp "tests/fuzz/fuzz_$target.c" $srcs $libs -o "tests/fuzz/bin/fuzz_$target"
seed_dir="tests/fuzz/seeds_$target"
dirs=("tests/fuzz/corpus_$target")
[ -d "$seed_dir" ] && dirs+=("$seed_dir")
"tests/fuzz/bin/fuzz_$target" -runs="$runs" -print_final_stats=1 "$@" "${dirs[@]}"
