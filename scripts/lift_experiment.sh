#!/usr/bin/env bash
# The lift experiment (issue 6): does multiplying demonstrations with `mulli synth` make a
# better policy than the source demos alone, at the same training budget? MimicGen's
# protocol: for each task, one policy trained on its source demos only and one on the same
# source demos plus the demos generated from them, both evaluated closed-loop on held-out
# layouts.
#
#   source:    SOURCE scripted demos of the task, with human-like noise (`mulli sim record`)
#   generated: the same source demos + GENERATED re-targeted demos (`mulli synth`)
#
# Both policies of a task have the same model and the same number of training steps. Prints a
# per-task table and writes OUT/lift.json.
#
#   bash scripts/lift_experiment.sh [OUT] [SOURCE] [GENERATED] [STEPS] [EPISODES]
#   defaults: runs/lift 10 1000 1500 50
#   bash scripts/lift_experiment.sh --summarize OUT   # the table again, from OUT's task dirs
#
# POLICY picks what the policies see:
#   state  (default) the objects' positions and the arm's state, no cameras: MimicGen's
#          low-dim setting; trains in about a minute per policy on 2 cores
#   pixels the flywheel's camera model (images + arm state); about 6 min per policy
# STATE_GATE=false turns off the instruction gate on the state (on by default, as in the
#   flywheel's model since session 9; the session-8 table was measured without it).
# TASKS=a,b limits the tasks (default: every task of kitchen-v1-single).
# MULLI=path/to/mulli picks the binary (default: a release build via cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

summarize() {
python3 - "$out" "$tasks" "$policy" <<'EOF'
import json, os, sys
out, tasks, policy = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
def read(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default
def score(task, arm):
    info = read(f"{out}/{task}/eval-{arm}/eval_info.json")
    if info is None:
        return None
    s = next(s for s in info["scores"] if s["task"] == task)
    return s["successes"], s["episodes"]
def secs(task, what):
    try:
        return int(open(f"{out}/{task}/{what}.seconds").read())
    except OSError:
        return None
rows, lifts = [], []
print(f"| task | source only | + generated | lift (points) | synth yield | accepted/s |")
print("|---|---|---|---|---|---|")
for task in tasks:
    src, gen = score(task, "source"), score(task, "generated")
    synth = read(f"{out}/{task}/generated/synth_report.json", {})
    per = synth.get("per_task", {}).get(task, {})
    yld, acc = per.get("yield"), per.get("accepted", 0)
    t_synth = secs(task, "synth")
    rate = acc / t_synth if t_synth else None
    # No generated policy (synth accepted nothing): the generated arm is the source arm.
    gen_eff = gen if gen is not None else src
    lift = 100 * (gen_eff[0] / gen_eff[1] - src[0] / src[1]) if src and gen_eff else None
    if lift is not None:
        lifts.append(lift)
    fmt = lambda s: f"{s[0]}/{s[1]}" if s else "—"
    print(f"| {task} | {fmt(src)} | {fmt(gen)} | {lift:+.0f} | "
          f"{'—' if yld is None else f'{100 * yld:.0f}%'} | {'—' if rate is None else f'{rate:.1f}'} |")
    rows.append({"task": task, "source": src, "generated": gen, "lift_points": lift,
                 "yield": yld, "accepted": acc, "attempts": per.get("attempts"),
                 "seconds": {w: secs(task, w) for w in ("record", "synth", "run-source", "run-generated")}})
mean = sum(lifts) / len(lifts) if lifts else float("nan")
tot = lambda arm: [sum(r[arm][i] for r in rows if r[arm]) for i in (0, 1)]
(sa, sn), (ga, gn) = tot("source"), tot("generated")
print(f"| **mean** | {100 * sa / max(sn, 1):.1f}% | {100 * ga / max(gn, 1):.1f}% | **{mean:+.1f}** | | |")
json.dump({"policy": policy, "tasks": rows, "mean_lift_points": mean,
           "source_pc": 100 * sa / max(sn, 1), "generated_pc": 100 * ga / max(gn, 1)},
          open(f"{out}/lift.json", "w"), indent=2)
print(f"→ {out}/lift.json")
EOF
}

if [[ ${1:-} == --summarize ]]; then
    out=${2:?usage: --summarize OUT}
    [[ -f $out/train.toml ]] || { echo "error: $out is not a lift experiment (no train.toml)" >&2; exit 1; }
    tasks=$(find "$out" -mindepth 2 -maxdepth 2 -name eval-source -printf '%h\n' | xargs -n1 basename | sort | paste -sd, -)
    policy=$(grep -q '^cameras = \[\]' "$out/train.toml" && echo state || echo pixels)
    summarize
    exit
fi
out=${1:-runs/lift}
source_per_task=${2:-10}
generated_per_task=${3:-1000}
steps=${4:-1500}
episodes=${5:-50}
policy=${POLICY:-state}
suite=kitchen-v1-single

if [[ -n "${MULLI:-}" ]]; then
    mulli=("$MULLI")
else
    cargo build --release --quiet
    mulli=(target/release/mulli)
    [[ -n "${CARGO_TARGET_DIR:-}" ]] && mulli=("$CARGO_TARGET_DIR/release/mulli")
fi
case $policy in
    state) inputs=$'env_state = "observed"\nenv_state_origin = ""\ncameras = []' ;;
    pixels) inputs="" ;;
    *)
        echo "error: POLICY=$policy; expected state or pixels" >&2
        exit 1
        ;;
esac
if [[ -e "$out" ]]; then
    echo "error: $out exists; choose another OUT (the experiment never overwrites results)" >&2
    exit 1
fi
tasks=${TASKS:-$("${mulli[@]}" sim tasks --suite "$suite" | awk '/^[a-z_]+$/ {print $1}' | paste -sd, -)}
mkdir -p "$out"
echo "lift experiment → $out: tasks $tasks; $source_per_task source → +$generated_per_task generated per task; $policy policy, $steps steps; $episodes held-out episodes per policy"

# The flywheel's model and optimizer (see `mulli flywheel --print-config`), at STEPS steps.
cat >"$out/train.toml" <<EOF
steps = $steps
batch_size = 32
lr = 0.001
warmup_steps = 50
ema_decay = 0.99
val_every = 250
checkpoint_every = 250
log_every = 25
$inputs

[model]
image_size = 64
conv_channels = [32, 32, 64, 64]
stem = "patch"
d_model = 96
n_heads = 4
n_layers = 2
d_ff = 256
state_gate = ${STATE_GATE:-true}
EOF

seconds() { echo $(($(date +%s) - $1)); }
for task in ${tasks//,/ }; do
    dir=$out/$task
    mkdir -p "$dir"
    start=$(date +%s)
    "${mulli[@]}" sim record --suite "$suite" --tasks "$task" --episodes "$source_per_task" \
        --width 64 --height 64 --seed 0 --out "$dir/source" >"$dir/record.log" 2>&1
    seconds "$start" >"$dir/record.seconds"
    start=$(date +%s)
    # A task synth cannot multiply (no accepted episode) is reported, not fatal.
    if ! "${mulli[@]}" synth --source "$dir/source" --out "$dir/generated" \
        --per-task "$generated_per_task" --seed 0 >"$dir/synth.log" 2>&1; then
        echo "$task: synth failed (see $dir/synth.log)"
    fi
    seconds "$start" >"$dir/synth.seconds"
    for arm in source generated; do
        data=(--data "$dir/source")
        if [[ $arm == generated ]]; then
            [[ -f $dir/generated/meta/info.json ]] || continue
            data+=(--data "$dir/generated")
        fi
        start=$(date +%s)
        "${mulli[@]}" train "${data[@]}" --out "$dir/run-$arm" --config "$out/train.toml" \
            >"$dir/train-$arm.log" 2>&1
        seconds "$start" >"$dir/run-$arm.seconds"
        "${mulli[@]}" eval --policy "$dir/run-$arm" --suite "$suite" --task "$task" \
            --split held_out_layouts --episodes "$episodes" --videos 1 \
            --out "$dir/eval-$arm" >"$dir/eval-$arm.log" 2>&1
    done
    for arm in source generated; do
        if [[ -f $dir/eval-$arm.log ]]; then
            grep -h "^held_out_layouts" "$dir/eval-$arm.log" | sed "s/^held_out_layouts/$task, $arm/" || true
        fi
    done
done
summarize
