#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Builds one fuzz target with libFuzzer, AddressSanitizer and UBSan straight
# from the repository sources and runs it for SECONDS over a copy of its
# seed corpus and past crash inputs.  Exits 77 (skipped) when clang or its
# fuzzer runtime (Debian: libclang-rt-14-dev) is missing.
#
#   tests/fuzz/run-fuzzer.sh TARGET [SECONDS] [extra libFuzzer options...]
#
# TARGET: config, control, recording or idx.  SECONDS: default $FUZZ_SECONDS,
# else 20.
# Environment:
#   MEAD_SOURCE_ROOT  repository (default: two levels above this script)
#   MEAD_BUILD_ROOT   meson build dir, for mead-build-config.h (optional)
#   FUZZ_WORKDIR      where the binary, the grown corpus and crash files go
#                     (default: $MEAD_BUILD_ROOT/fuzz-work/TARGET, else a
#                     temporary directory)
#   FUZZ_KEEP_CORPUS  when set to a directory, new inputs are written there
#                     instead of a scratch copy (for long campaigns)
#   CC                the clang to use (default: clang)
set -eu

usage() {
	echo "usage: $0 config|control|recording|idx [SECONDS] [libFuzzer options...]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
target=$1
shift
seconds=${FUZZ_SECONDS:-20}
if [ $# -ge 1 ]; then
	case $1 in
	-*) ;;
	*) seconds=$1; shift ;;
	esac
fi
case $seconds in
''|*[!0-9]*) usage ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
src=${MEAD_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
cc=${CC:-clang}

case $target in
config)
	sources="lib/cfg/cfg.c lib/core/parse.c config/config.c config/layout.c protocol/protocol_config.c"
	libs="-lyaml -lm" ;;
control)
	sources="daemon/control.c lib/core/json.c lib/core/parse.c"
	libs="-lzmq -lm -lpthread" ;;
recording)
	sources="lib/core/recording.c lib/core/json.c"
	libs="-lz -lm" ;;
idx)
	sources="lib/core/idx.c lib/core/err.c"
	libs="-lz" ;;
*)
	usage ;;
esac
# The link line every target shares (unused libraries cost nothing).
libs="$libs -lyaml -lzmq -lz -lm -lpthread -ldl"

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "SKIP: $cc not found (apt-get install clang libclang-rt-14-dev)"
	exit 77
fi

if [ -n "${FUZZ_WORKDIR:-}" ]; then
	work=$FUZZ_WORKDIR
elif [ -n "${MEAD_BUILD_ROOT:-}" ] && [ -d "$MEAD_BUILD_ROOT" ]; then
	work=$MEAD_BUILD_ROOT/fuzz-work/$target
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/mead-fuzz-$target.XXXXXX")
fi
mkdir -p "$work"

# The fuzzer runtime ships separately from clang on Debian.
probe=$work/probe.c
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' >"$probe"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$work/probe" >"$work/probe.log" 2>&1; then
	echo "SKIP: $cc cannot link -fsanitize=fuzzer,address,undefined (apt-get install libclang-rt-14-dev):"
	sed -n 1,5p "$work/probe.log"
	exit 77
fi

incs="-I. -Iinclude"
if [ -n "${MEAD_BUILD_ROOT:-}" ] && [ -f "$MEAD_BUILD_ROOT/mead-build-config.h" ]; then
	incs="$incs -I$(cd "$MEAD_BUILD_ROOT" && pwd)"
fi

bin=$work/fuzz_$target
echo "building $bin"
# Relative source paths from the repository root; the remaining arguments
# ("$@") are libFuzzer options.
# shellcheck disable=SC2086
(cd "$src" && "$cc" -std=gnu17 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer -fno-strict-aliasing \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	$incs "tests/fuzz/fuzz_$target.c" $sources $libs -o "$bin")

corpus=${FUZZ_KEEP_CORPUS:-$work/corpus}
mkdir -p "$corpus" "$work/artifacts"
for d in "$here/corpus/$target" "$here/crashes/$target"; do
	if [ -d "$d" ]; then
		find "$d" -maxdepth 1 -type f ! -name '.*' -exec cp -f {} "$corpus/" \;
	fi
done

dict=
if [ -f "$here/$target.dict" ]; then
	dict="-dict=$here/$target.dict"
fi

echo "fuzzing $target for ${seconds}s (corpus $corpus, crashes into $work/artifacts/)"
stamp=$work/artifacts/.start
: >"$stamp"
status=0
# shellcheck disable=SC2086
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:max_malloc_fill_size=0} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$work/artifacts/" $dict "$@" "$corpus" || status=$?

# With -fork=N -ignore_crashes=1 libFuzzer exits 0 after a finding: new
# files in artifacts/ count as well.
found=$(find "$work/artifacts" -type f ! -name '.*' -newer "$stamp" | sort)
if [ "$status" -ne 0 ] || [ -n "$found" ]; then
	echo "FAIL: fuzz_$target found a problem (exit $status).  Reproducer(s):"
	for f in $found; do ls -l "$f"; done
	echo "Replay: $bin FILE;  keep it: copy FILE to tests/fuzz/crashes/$target/ (see docs/fuzzing.md)."
	exit 1
fi
echo "OK: fuzz_$target ran ${seconds}s without a finding"
