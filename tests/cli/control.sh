#!/bin/sh
# `ocd control` and `ocd probe controlnet|canny|controlvideo` on the tiny fixtures: the ControlNet
# goldens via compare.py (both ControlNet layouts), an end-to-end run (canny from a video, a
# condition clip, the hierarchical sampler, DPM-Solver++), reproducibility, the OCD presets with a
# mask, `ocd bench control` (table, JSON, CSV, --estimate, --pass), and bad input (one error line,
# non-zero exit, no output). Run by tests/run.sh with $OCD set; prints PASS/FAIL lines.
OCD=${OCD:-build/ocd}
M=tests/data/tiny-sd
CN=tests/data/tiny-controlnet
CN1=tests/data/tiny-controlnet-ldm.safetensors
G=tests/data/golden
CMP=../shared/tools/compare.py
[ -f "$CMP" ] || CMP=/work/shared/tools/compare.py
T=$(mktemp -d /tmp/ocd_control.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM

pass() { echo "PASS  control.sh: $1"; }
fail() { echo "FAIL  control.sh: $1"; }
check() { if [ "$1" -eq 0 ]; then pass "$2"; else fail "$2"; fi; }
golden() { # golden KIND CASE [ocd options]
    kind=$1; case=$2; shift 2
    if "$OCD" probe "$kind" --in "$G/$case.safetensors" --out "$T/$case.safetensors" "$@" >"$T/log" 2>&1 &&
        python3 "$CMP" "$G/$case.safetensors" "$T/$case.safetensors" >"$T/cmp" 2>&1; then
        pass "golden $case ($*)"
    else
        fail "golden $case ($*): $(tail -n 3 "$T/log" "$T/cmp" | tr '\n' ' ')"
    fi
}

# ---- goldens ---------------------------------------------------------------------------------
if [ -f "$CMP" ]; then
    golden canny canny
    golden controlnet controlnet_forward --model $M --controlnet $CN
    golden controlnet controlnet_forward --model tests/data/tiny-sd-ldm.safetensors --controlnet $CN1
    golden controlnet controlnet_forward_nonsquare --model $M --controlnet $CN
fi

# ---- a source clip: the golden's synthetic frames are not a video, so make one --------------------
mkdir -p "$T/src"
if command -v ffmpeg >/dev/null 2>&1; then
    ffmpeg -v error -y -f lavfi -i testsrc=size=96x64:rate=8 -frames:v 6 "$T/src/%05d.png"
fi
if [ ! -f "$T/src/00006.png" ]; then
    echo "SKIP  control.sh: no ffmpeg to make a test clip"
    exit 0
fi
ctl() { # ctl OUT [options]: tiny-sd, 64x64, 4 frames, 2 steps
    out=$1; shift
    "$OCD" control --model $M --controlnet $CN --video "$T/src" --prompt "a red car" --size 64x64 --frames 4 --steps 2 \
        --threads 1 --quiet --out "$out" "$@" >"$T/out" 2>"$T/err"
}
ctl "$T/a.mp4" --condition canny --save-condition "$T/cond"; r=$?
[ $r -eq 0 ] && [ -s "$T/a.mp4" ] && [ -f "$T/cond/00003.png" ] && grep -q "UNet calls" "$T/out"
check $? "ocd control --condition canny writes the video and the condition clip"

if [ -f "$CMP" ] && ! grep -q "normalises each frame on its own" "$T/out"; then
    for c in controlvideo_basic controlvideo_basic_asis controlvideo_long; do
        golden controlvideo $c --model $M --controlnet $CN
    done
else
    echo "SKIP  control.sh: controlvideo goldens (this build's UNet has no clip-wide GroupNorm)"
fi

ctl "$T/b1" --condition canny --seed 5; r1=$?
ctl "$T/b2" --condition canny --seed 5; r2=$?
ctl "$T/b3" --condition canny --seed 6
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && cmp -s "$T/b1/00000.png" "$T/b2/00000.png" && cmp -s "$T/b1/00003.png" "$T/b2/00003.png"
check $? "same seed twice: identical frames"
! cmp -s "$T/b1/00000.png" "$T/b3/00000.png"; check $? "another seed: other frames"

"$OCD" control --model $M --controlnet $CN1 --condition "$T/cond" --prompt "a red car" --size 64x64 --steps 2 --seed 5 \
    --threads 1 --quiet --out "$T/c" >"$T/out" 2>"$T/err"
[ $? -eq 0 ] && [ -f "$T/c/00003.png" ] && [ ! -f "$T/c/00004.png" ]
check $? "a condition clip without --video (4 frames), control_model.* ControlNet"
cmp -s "$T/c/00002.png" "$T/b1/00002.png"; check $? "saved canny clip as --condition = --condition canny (same seed)"
ctl "$T/d" --condition canny --long --window 3 --sampler dpmpp-2m --smoother-steps 2; r=$?
[ $r -eq 0 ] && [ -f "$T/d/00003.png" ] && grep -q "key frames: 0 2 3" "$T/out" && grep -q "pixel space" "$T/out"
check $? "--long (key frames 0 2 3), dpmpp-2m, pixel-space smoother logged"

# ---- the OCD presets (ocd-method.md 7) ---------------------------------------------------------
ctl "$T/p0" --condition canny --seed 5 --preset controlvideo; r=$?
[ $r -eq 0 ] && cmp -s "$T/p0/00000.png" "$T/b1/00000.png" && cmp -s "$T/p0/00003.png" "$T/b1/00003.png"
check $? "--preset controlvideo: the default run, frame for frame"
mkdir -p "$T/mask" "$T/empty"
ffmpeg -v error -y -f lavfi -i color=black:size=96x64:rate=8 -vf "drawbox=x=40:y=24:w=12:h=10:color=white:t=fill" -frames:v 6 \
    "$T/mask/%05d.png"
ffmpeg -v error -y -f lavfi -i color=black:size=96x64:rate=8 -frames:v 6 "$T/empty/%05d.png"
ctl "$T/o" --condition canny --size 192x192 --frames 3 --steps 4 --preset ocd --mask "$T/mask" --tome-min-tokens 8; r=$?
[ $r -eq 0 ] && [ -f "$T/o/00002.png" ] && grep -q "Object-Centric Sampling ran" "$T/out" && grep -q "K/V tokens merged per level: L0" "$T/out" &&
    grep -q "counted GFLOP" "$T/out" && grep -q "OCS: crop 22% of the frame" "$T/out" && [ ! -s "$T/err" ]
check $? "--preset ocd --mask: merging, OC-ToMe and OCS ran and are reported ($(grep -o 'OCS: crop.*saved)' "$T/out"))"
ctl "$T/e" --condition canny --size 192x192 --frames 3 --steps 2 --preset ocd --mask "$T/empty"; r=$?
[ $r -eq 0 ] && [ -f "$T/e/00002.png" ] && grep -q "Object-Centric Sampling skipped" "$T/out" && grep -q "empty mask" "$T/err"
check $? "--preset ocd with an empty mask: plain sampling, said on stderr ($(cat "$T/err"))"

# ---- ocd bench control on the tiny model ------------------------------------------------------
"$OCD" bench control --model $M --controlnet $CN --size 256 --frames 2 --steps-controlvideo 2 --steps 4 \
    --runs controlvideo,ocd,ocd-no-ocs --threads 1 --json "$T/b.json" --csv "$T/b.csv" >"$T/out" 2>"$T/err"; r=$?
[ $r -eq 0 ] && grep -q "^run .*GFLOP.*RSS MiB.*merged.*Pin.*Pout.*Sall.*cons" "$T/out" && grep -q "^ocd-no-ocs " "$T/out" &&
    grep -q "^mask        box:0.14" "$T/out"
check $? "bench control: the table, one row per run"
[ $r -ne 0 ] && cat "$T/out" "$T/err"
if command -v python3 >/dev/null; then
    python3 - "$T/b.json" "$T/b.csv" >"$T/py" 2>&1 <<'EOF2'
import csv, json, math, sys
d = json.load(open(sys.argv[1]))
runs = d["runs"]
assert [r["name"] for r in runs] == ["controlvideo", "ocd", "ocd-no-ocs"], runs
for r in runs:
    assert r["ok"] and r["unet_calls"] > 0 and r["peak_rss_bytes"] > 0 and r["gflop"] > 0, r
    for k in ("psnr_inside", "psnr_outside", "ssim_inside", "ssim_outside", "consistency_psnr"):
        assert r[k] is not None and math.isfinite(r[k]), (r["name"], k)
cv, ocd, noocs = runs
assert cv["psnr_all"] == 100.0 and sum(cv["tokens_merged"]) == 0, cv
assert ocd["ocs_area"] == 0.25 and abs(ocd["full_frame_evals"] - 3.5) < 1e-9 and sum(ocd["tokens_merged"]) > 0, ocd  # b=2: 2/4 + 1 + 2
assert noocs["ocs_area"] == 0 and noocs["full_frame_evals"] == 4 and ocd["gflop"] < noocs["gflop"], noocs
rows = list(csv.DictReader(open(sys.argv[2])))
assert [r["run"] for r in rows] == [r["name"] for r in runs] and all(r["ok"] == "1" for r in rows)
print("ok: ocd %.2f full-frame evaluations, %.1f GFLOP vs %.1f without OCS" % (ocd["full_frame_evals"], ocd["gflop"], noocs["gflop"]))
EOF2
    r=$?
    check $r "bench control: JSON and CSV parse and agree ($(tail -1 "$T/py"))"
    [ $r -ne 0 ] && cat "$T/py"
fi
"$OCD" bench control --model $M --controlnet $CN --size 256 --frames 2 --estimate --runs controlvideo,ocd --threads 1 \
    --json "$T/e.json" >"$T/out" 2>&1; r=$?
[ $r -eq 0 ] && grep -q "^ocd " "$T/out" && grep -q "predicted_total_s" "$T/e.json"
check $? "bench control --estimate prints predictions and writes JSON"
"$OCD" bench control --list-runs >"$T/out" 2>&1 && [ "$(grep -c '^ocd' "$T/out")" -ge 8 ] && grep -q "^controlvideo " "$T/out"
check $? "bench control --list-runs"
"$OCD" bench control --pass --model $M --controlnet $CN --size 64 --frames 2 --threads 1 >"$T/out" 2>&1 &&
    grep -q "UNet (fully cross-frame attention)" "$T/out"
check $? "bench control --pass: the one-pass timing"
benchbad() { # benchbad NAME PATTERN ARGS...
    name=$1; pat=$2; shift 2
    "$OCD" bench control --model $M --controlnet $CN "$@" >/dev/null 2>"$T/err"; r=$?
    [ $r -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$pat" "$T/err"
    check $? "bench control bad input: $name ($(cat "$T/err"))"
}
benchbad "unknown run" "unknown run" --runs controlvideo,nosuch
benchbad "box area out of range" "box:AREA" --mask box:2
mkdir -p "$T/mask2" && cp "$T/mask/00001.png" "$T/mask/00002.png" "$T/mask2/"
benchbad "mask of the wrong length" "must match" --video "$T/src" --mask "$T/mask2" --frames 2 --size 64

# ---- bad input: one error line, exit 1, no output ---------------------------------------------
bad() { # bad NAME PATTERN [options]
    name=$1; pat=$2; shift 2
    rm -rf "$T/bad.mp4"
    "$OCD" control --model $M --controlnet $CN --prompt x --size 64x64 --steps 1 --quiet --out "$T/bad.mp4" "$@" \
        >"$T/out" 2>"$T/err"
    r=$?
    [ $r -eq 1 ] && [ ! -e "$T/bad.mp4" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$pat" "$T/err"
    check $? "$name -> error: $(cat "$T/err")"
}
mkdir -p "$T/short" && cp "$T/cond/00000.png" "$T/cond/00001.png" "$T/short/"
bad "condition clip of the wrong length" "must match" --video "$T/src" --condition "$T/short" --frames 2
mkdir -p "$T/odd"
ffmpeg -v error -y -f lavfi -i testsrc=size=48x48:rate=8 -frames:v 6 "$T/odd/%05d.png"
bad "condition clip of the wrong size" "48x48" --video "$T/src" --condition "$T/odd" --frames 4
bad "canny without --video" "needs --video" --condition canny
bad "too many frames for the clip" "has 6 frames" --video "$T/src" --condition canny --frames 7
bad "a size not a multiple of 8" "multiples of 8" --video "$T/src" --condition canny --size 60x64
bad "a mask of the wrong length" "must match" --video "$T/src" --condition canny --frames 2 --mask "$T/short"
bad "an unknown preset" "unknown preset" --video "$T/src" --condition canny --preset fast
bad "--ocs with --no-ocs" "contradict" --video "$T/src" --condition canny --ocs --no-ocs
"$OCD" control --model $M --video "$T/src" --condition canny --prompt x --out "$T/bad.mp4" >/dev/null 2>"$T/err"
[ $? -eq 1 ] && grep -q "no ControlNet" "$T/err"; check $? "no --controlnet -> error"
exit 0
