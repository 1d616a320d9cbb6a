#!/bin/sh
# `ocd generate` / `ocd reconstruct` / `ocd probe pipeline_*` on tiny-sd: reproducibility across
# runs and thread counts, seeds, the goldens via compare.py, and bad input (one stderr line,
# non-zero exit, no output file). Run by tests/run.sh with $OCD set; prints PASS/FAIL lines.
OCD=${OCD:-build/ocd}
M=tests/data/tiny-sd
T=$(mktemp -d /tmp/ocd_generate.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM

pass() { echo "PASS  generate.sh: $1"; }
fail() { echo "FAIL  generate.sh: $1"; }
check() { if [ "$1" -eq 0 ]; then pass "$2"; else fail "$2"; fi; }

gen() { # gen OUT THREADS SEED [more options]
    out=$1; th=$2; seed=$3; shift 3
    "$OCD" generate --model $M --prompt "a photo of a cat" --size 64x64 --steps 3 --seed "$seed" --threads "$th" \
        --quiet --out "$out" "$@" >"$T/log" 2>&1
}

# ---- reproducibility -------------------------------------------------------------------------
gen "$T/a1.png" 1 7; r1=$?
gen "$T/a2.png" 2 7; r2=$?
gen "$T/a3.png" 1 7; r3=$?
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ]; check $? "generate runs (exit $r1 $r2 $r3)"
cmp -s "$T/a1.png" "$T/a3.png"; check $? "same seed twice: byte-identical PNG"
cmp -s "$T/a1.png" "$T/a2.png"; check $? "same seed, --threads 1 vs 2: byte-identical PNG"
gen "$T/b.png" 1 8
[ -f "$T/b.png" ] && ! cmp -s "$T/a1.png" "$T/b.png"; check $? "another seed: another image"
gen "$T/d.png" 1 7 --sampler dpmpp-2m; r=$?
[ $r -eq 0 ] && [ -f "$T/d.png" ] && ! cmp -s "$T/a1.png" "$T/d.png"; check $? "--sampler dpmpp-2m"
gen "$T/e.png" 1 7 --prompt "" --cfg 1; r=$?
[ $r -eq 0 ] && [ -f "$T/e.png" ]; check $? "empty prompt, --cfg 1"

# summary line (time, UNet calls, peak RSS) and progress lines without --quiet
"$OCD" generate --model $M --prompt "x" --size 64x64 --steps 2 --threads 1 --out "$T/s.png" >"$T/out" 2>"$T/err"
grep -q "UNet calls" "$T/out" && grep -q "peak RSS" "$T/out" && grep -q "step 2/2" "$T/err"
check $? "summary and progress lines"

# reconstruct: from the generated image, prints a PSNR
"$OCD" reconstruct --model $M --image "$T/a1.png" --prompt "a photo of a cat" --steps 3 --threads 1 --quiet \
    --out "$T/r.png" >"$T/out" 2>&1; r=$?
[ $r -eq 0 ] && [ -f "$T/r.png" ] && grep -q "PSNR" "$T/out"; check $? "reconstruct ($(grep PSNR "$T/out"))"

# ---- goldens through the probe ---------------------------------------------------------------
# compare.py lives with the shared fixtures (stdlib-only Python); $COMPARE overrides the search
CMP=${COMPARE:-}
for c in tools/compare.py ../shared/tools/compare.py /work/shared/tools/compare.py; do
    [ -z "$CMP" ] && [ -f "$c" ] && CMP=$c
done
for k in pipeline_txt2img pipeline_ddim_inversion; do
    "$OCD" probe $k --model $M --in tests/data/golden/$k.safetensors --out "$T/$k.safetensors" --threads 1 >"$T/log" 2>&1
    r=$?
    check $r "probe $k runs"
    [ $r -ne 0 ] && cat "$T/log"
    if [ -z "$CMP" ] || ! command -v python3 >/dev/null; then echo "SKIP  generate.sh: compare.py or python3 not found"; continue; fi
    python3 "$CMP" tests/data/golden/$k.safetensors "$T/$k.safetensors" >"$T/cmp" 2>&1 &&
        python3 "$CMP" --strict tests/data/golden/$k.safetensors "$T/$k.safetensors" >>"$T/cmp" 2>&1
    r=$?
    check $r "probe $k vs golden (compare.py and --strict)"
    [ $r -ne 0 ] && cat "$T/cmp"
done

# ---- bad input: one line on stderr, non-zero exit, no output file ----------------------------
printf 'not an image\n' >"$T/junk.png"
bad() { # bad NAME ARGS...
    name=$1; shift
    rm -f "$T/bad.png"
    "$OCD" "$@" --model $M --threads 1 --out "$T/bad.png" >/dev/null 2>"$T/err"; r=$?
    n=$(wc -l <"$T/err")
    if [ $r -ne 0 ] && [ "$n" -eq 1 ] && [ ! -e "$T/bad.png" ]; then pass "bad input: $name ($(cat "$T/err"))"
    else fail "bad input: $name (exit $r, $n stderr lines)"; cat "$T/err"; fi
}
bad "missing image" reconstruct --image "$T/nonexistent.png" --prompt "x" --steps 2
bad "no --image" reconstruct --prompt "x" --steps 2
bad "unreadable image" reconstruct --image "$T/junk.png" --prompt "x" --steps 2
bad "zero steps" generate --prompt "x" --size 64x64 --steps 0
bad "absurd steps" generate --prompt "x" --size 64x64 --steps 1001
bad "steps not a number" generate --prompt "x" --size 64x64 --steps many
bad "size not divisible by 8" generate --prompt "x" --size 60x64 --steps 2
bad "malformed size" generate --prompt "x" --size 64 --steps 2
bad "unknown sampler" generate --prompt "x" --size 64x64 --steps 2 --sampler euler
bad "no prompt" generate --size 64x64 --steps 2
bad "reconstruct zero steps" reconstruct --image "$T/a1.png" --prompt "x" --steps 0
rm -f "$T/bad.png"
"$OCD" generate --model $M --prompt x --size 64x64 --steps 2 --out "$T/no/such/dir/x.png" >/dev/null 2>"$T/err"; r=$?
[ $r -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ]; check $? "bad input: output folder missing"
exit 0
