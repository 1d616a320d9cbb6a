#!/bin/sh
# `ocd edit` end to end on the toy model and clip: outputs (mp4, gif, PNG folder, side-by-side),
# the job file, reproducibility, and bad input (one stderr line, non-zero exit, no output).
# Run by tests/run.sh with $OCD set; prints PASS/FAIL lines.
OCD=${OCD:-build/ocd}
M=models/toy-sd
CLIP=examples/toy-clip/clip.mp4
T=$(mktemp -d /tmp/ocd_edit.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM

pass() { echo "PASS  edit.sh: $1"; }
fail() { echo "FAIL  edit.sh: $1"; }
check() { if [ "$1" -eq 0 ]; then pass "$2"; else fail "$2"; fi; }
edit() { # edit OUT [more options]
    out=$1; shift
    "$OCD" edit --model $M --video $CLIP --frames 4 --source "a red circle on green grass" \
        --target "a blue circle on green grass" --steps 4 --cfg 5 --least-sc-channel 64 --threads 1 --quiet \
        --out "$out" "$@" >"$T/log" 2>"$T/err"
}
one_error_line() { # exit status $1 non-zero, exactly one stderr line, containing $2
    [ "$1" -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$2" "$T/err"
}

edit "$T/a.mp4" --side-by-side "$T/sbs.gif"; r=$?
[ $r -eq 0 ] && [ -s "$T/a.mp4" ] && [ -s "$T/sbs.gif" ]; check $? "mp4 + side-by-side gif written (exit $r)"
head -c 12 "$T/a.mp4" | grep -q ftyp; check $? "mp4 has an ftyp box"
head -c 6 "$T/sbs.gif" | grep -q GIF8; check $? "gif header"
grep -q "UNet calls" "$T/log" && grep -q "peak RSS" "$T/log" && grep -q "attention store" "$T/log"
check $? "summary: phases, UNet calls, peak RSS, store bytes"
edit "$T/frames/"; r=$?
[ $r -eq 0 ] && [ -f "$T/frames/00000.png" ] && [ -f "$T/frames/00003.png" ] && [ ! -f "$T/frames/00004.png" ]
check $? "PNG folder: 4 frames"
edit "$T/frames2/"
for i in 0 1 2 3; do cmp -s "$T/frames/0000$i.png" "$T/frames2/0000$i.png" || exit_diff=1; done
[ -z "$exit_diff" ]; check $? "same command twice: byte-identical frames"

cat >"$T/job.json" <<JOB
{"model": "$M", "video": "$CLIP", "frames": 4, "source": "a red circle on green grass",
 "target": "a blue circle on green grass", "steps": 4, "cfg": 5, "least-sc-channel": 64,
 "threads": 1, "quiet": true, "out": "$T/frames3/"}
JOB
"$OCD" edit --job "$T/job.json" >"$T/log" 2>"$T/err"; r=$?
same=0; for i in 0 1 2 3; do cmp -s "$T/frames/0000$i.png" "$T/frames3/0000$i.png" || same=1; done
[ $r -eq 0 ] && [ $same -eq 0 ]; check $? "--job file gives the same frames as the options"
"$OCD" edit --job "$T/job.json" --steps 3 --out "$T/frames4/" >"$T/log" 2>"$T/err"
! cmp -s "$T/frames/00000.png" "$T/frames4/00000.png"; check $? "command line overrides the job file"

# ---- bad input ------------------------------------------------------------------------------
head -c 3000 $CLIP >"$T/trunc.mp4"
edit "$T/bad1.mp4" --video "$T/trunc.mp4"; r=$?
one_error_line $r "trunc.mp4" && [ ! -e "$T/bad1.mp4" ]; check $? "truncated video: one error line, no output"
echo "not a video" >"$T/text.mp4"
edit "$T/bad2.mp4" --video "$T/text.mp4"; r=$?
one_error_line $r "text.mp4" && [ ! -e "$T/bad2.mp4" ]; check $? "text file as video: one error line, no output"
edit "$T/bad3.mp4" --video "$T/missing.mp4"; r=$?
one_error_line $r "missing.mp4" && [ ! -e "$T/bad3.mp4" ]; check $? "missing video"
edit "$T/bad4.mp4" --xframe sideways; r=$?
one_error_line $r "xframe" && [ ! -e "$T/bad4.mp4" ]; check $? "unknown --xframe"
edit "$T/bad5.mp4" --steps 0; r=$?
one_error_line $r "steps" && [ ! -e "$T/bad5.mp4" ]; check $? "zero steps"
edit "$T/bad6.mp4" --size 60; r=$?
one_error_line $r "multiple of 8" && [ ! -e "$T/bad6.mp4" ]; check $? "size not a multiple of 8"
edit "$T/bad7.mp4" --frames 99; r=$?
one_error_line $r "frames" && [ ! -e "$T/bad7.mp4" ]; check $? "more frames than the clip has"
edit "$T/bad8.mp4" --model /nonexistent; r=$?
one_error_line $r "nonexistent" && [ ! -e "$T/bad8.mp4" ]; check $? "missing model"
edit "$T/bad11.mp4" --precision fp16; r=$?
one_error_line $r "fp16" && [ ! -e "$T/bad11.mp4" ]; check $? "unknown --precision"
edit "$T/fp32/" --precision fp32; r=$?
[ $r -eq 0 ] && [ -f "$T/fp32/00003.png" ]; check $? "--precision fp32 runs (exit $r)"
edit "$T/bad9.avi"; r=$?
one_error_line $r "avi" && [ ! -e "$T/bad9.avi" ]; check $? "unsupported output type"
echo '{"steps": ' >"$T/bad.json"
"$OCD" edit --job "$T/bad.json" >"$T/log" 2>"$T/err"; r=$?
one_error_line $r "job"; check $? "malformed job file"
"$OCD" edit --model $M --video $CLIP --target x --out "$T/bad10.mp4" >"$T/log" 2>"$T/err"; r=$?
one_error_line $r "source" && [ ! -e "$T/bad10.mp4" ]; check $? "missing --source"
"$OCD" info "$T/trunc.mp4" >"$T/log" 2>"$T/err"; r=$?
one_error_line $r "trunc.mp4"; check $? "ocd info on a non-model"
