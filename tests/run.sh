#!/bin/sh
# Runs every test program in BUILD/tests and the CLI tests; prints one closing line
# "N passed, N failed" (the sum over all programs). Exit status 1 if anything failed.
BUILD=${1:-build}
# Sleeping rather than spinning OpenMP workers: with other jobs on the cores, spinning threads
# burn whole scheduler slices at every barrier and a seconds-long suite takes many minutes.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
pass=0; fail=0; failed_progs=""
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    t0=$(date +%s.%N)
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    printf 'time  %s %.1f s\n' "$(basename "$t")" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed$' | tail -1)
    p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed/\1/')
    [ -n "$p" ] || { p=0; f=1; echo "FAIL  $t crashed or printed no summary (exit $rc)"; }
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && { f=1; echo "FAIL  $t exited $rc"; }
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_progs="$failed_progs $(basename "$t")"
done
for s in tests/cli/*.sh; do
    [ -f "$s" ] || continue
    t0=$(date +%s.%N)
    out=$(OCD="$BUILD/ocd" sh "$s" 2>&1); rc=$?
    printf '%s\n' "$out"
    printf 'time  %s %.1f s\n' "$(basename "$s")" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
    p=$(printf '%s\n' "$out" | grep -c '^PASS'); f=$(printf '%s\n' "$out" | grep -c '^FAIL')
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_progs="$failed_progs $(basename "$s")"
done
[ -n "$failed_progs" ] && echo "failing:$failed_progs"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
