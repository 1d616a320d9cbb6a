#!/bin/sh
# `ocd bench edit` smoke run on the toy model (models/toy-sd, 64x64, few steps): the table, the
# JSON and the CSV appear and parse, every run succeeds, the toy judge and the fidelity columns are
# filled; --estimate, --list-runs and bad input (one stderr line, non-zero exit). Prints PASS/FAIL.
OCD=${OCD:-build/ocd}
T=$(mktemp -d /tmp/ocd_bench_edit.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM

pass() { echo "PASS  bench_edit.sh: $1"; }
fail() { echo "FAIL  bench_edit.sh: $1"; }
check() { if [ "$1" -eq 0 ]; then pass "$2"; else fail "$2"; fi; }

RUNS=fatezero,optimized,ocd,ocd-no-ocs
"$OCD" bench edit --model models/toy-sd --frames 4 --steps-fatezero 2 --steps 2 --runs $RUNS --threads 1 \
    --json "$T/b.json" --csv "$T/b.csv" >"$T/out" 2>"$T/err"; r=$?
check $r "toy bench runs (exit $r)"
[ $r -ne 0 ] && { cat "$T/out" "$T/err"; }
grep -q "^run .*GFLOP.*RSS MiB.*Pin.*Pout.*bgP.*cons.*tgt" "$T/out" && grep -q "^ocd-no-ocs " "$T/out" &&
    grep -q "^fatezero .*/4$" "$T/out"
check $? "table: header, one row per run, toy judge column"

if command -v python3 >/dev/null; then
    python3 - "$T/b.json" "$T/b.csv" "$RUNS" >"$T/py" 2>&1 <<'EOF'
import csv, json, math, sys
d = json.load(open(sys.argv[1]))
names = sys.argv[3].split(",")
runs = d["runs"]
assert [r["name"] for r in runs] == names, [r["name"] for r in runs]
for r in runs:
    assert r["ok"], r
    for k in ("t_encode", "t_invert", "t_edit", "t_decode", "gflop"):
        assert r[k] is not None and r[k] >= 0, (r["name"], k, r[k])
    assert r["unet_calls"] > 0 and r["peak_rss_bytes"] > 0, r
    assert r["target_colour_frames"] is not None and 0 <= r["target_colour_frames"] <= 4, r
    for k in ("psnr_inside", "psnr_outside", "ssim_inside", "ssim_outside", "background_psnr_vs_source", "consistency_psnr"):
        assert r[k] is not None and math.isfinite(r[k]), (r["name"], k)
fz = runs[0]
assert fz["psnr_all"] == 100.0 and abs(fz["ssim_all"] - 1) < 1e-12, fz   # the reference against itself
assert d["frames"] == 4 and d["size"] == 64 and d["source_consistency_psnr"] > 0
assert d["precision"] in ("bf16", "fp32"), d["precision"]
rows = list(csv.DictReader(open(sys.argv[2])))
assert [r["run"] for r in rows] == names, rows
assert all(len(r) == len(rows[0]) and r["ok"] == "1" for r in rows)
for r, j in zip(rows, runs):
    assert r["unet_calls"] == str(j["unet_calls"]) and abs(float(r["psnr_outside"]) - j["psnr_outside"]) < 1e-4
print("ok", len(runs), "runs")
EOF
    r=$?
    check $r "JSON and CSV parse and agree ($(tail -1 "$T/py"))"
    [ $r -ne 0 ] && cat "$T/py"
else
    echo "SKIP  bench_edit.sh: python3 not found (JSON/CSV parse)"
fi

"$OCD" bench edit --model models/toy-sd --estimate --runs fatezero,ocd --frames 4 --threads 1 --json "$T/e.json" >"$T/out" 2>&1; r=$?
[ $r -eq 0 ] && grep -q "^ocd " "$T/out" && grep -q "predicted_total_s" "$T/e.json"
check $? "--estimate prints predictions and writes JSON"
[ $r -ne 0 ] && cat "$T/out"

"$OCD" bench edit --list-runs >"$T/out" 2>&1 && [ "$(grep -c '^ocd' "$T/out")" -ge 8 ]
check $? "--list-runs"

bad() { # bad NAME ARGS...
    name=$1; shift
    "$OCD" bench edit "$@" >/dev/null 2>"$T/err"; r=$?
    n=$(wc -l <"$T/err")
    if [ $r -ne 0 ] && [ "$n" -eq 1 ]; then pass "bad input: $name ($(cat "$T/err"))"
    else fail "bad input: $name (exit $r, $n stderr lines)"; cat "$T/err"; fi
}
bad "unknown run" --model models/toy-sd --runs fatezero,nosuch
bad "no model" --runs fatezero
bad "size not a multiple of 8" --model models/toy-sd --size 60
bad "missing video" --model models/toy-sd --video "$T/none.mp4" --source a --target b
bad "foreign clip without prompts" --model models/toy-sd --video "$T/none.mp4"
exit 0
