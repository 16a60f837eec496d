#!/usr/bin/env bash
# The lift experiment (issue 6): does multiplying demonstrations with `mulli synth` make a
# better policy than the source demos alone, at the same training budget?
#
#   source:    SOURCE demos per task, scripted with human-like noise (`mulli sim record`)
#   generated: the same source demos + GENERATED re-targeted demos per task (`mulli synth`)
#
# Both policies have the flywheel's model and the same number of training steps, and are
# evaluated closed-loop on held-out layouts. Prints a per-task table and writes
# OUT/lift.json.
#
#   bash scripts/lift_experiment.sh [OUT] [SOURCE] [GENERATED] [STEPS] [EPISODES]
#   defaults: runs/lift 10 100 1500 10       (about 20 min on 2 cores)
#
# MULLI=path/to/mulli picks the binary (default: a release build via cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-runs/lift}
source_per_task=${2:-10}
generated_per_task=${3:-100}
steps=${4:-1500}
episodes=${5:-10}
suite=kitchen-v1-single

if [[ -n "${MULLI:-}" ]]; then
    mulli=("$MULLI")
else
    cargo build --release --quiet
    mulli=(target/release/mulli)
    [[ -n "${CARGO_TARGET_DIR:-}" ]] && mulli=("$CARGO_TARGET_DIR/release/mulli")
fi
if [[ -e "$out" ]]; then
    echo "error: $out exists; choose another OUT (the experiment never overwrites results)" >&2
    exit 1
fi
mkdir -p "$out"

tasks=$("${mulli[@]}" sim tasks --suite "$suite" | awk '/^[a-z_]+$/ {print $1}' | paste -sd, -)
n_tasks=$(tr ',' '\n' <<<"$tasks" | wc -l)
echo "lift experiment → $out: $n_tasks tasks, $source_per_task source → +$generated_per_task generated per task, $steps steps, $episodes held-out episodes per task"

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

[model]
image_size = 64
conv_channels = [32, 32, 64, 64]
stem = "patch"
d_model = 96
n_heads = 4
n_layers = 2
d_ff = 256
EOF

start=$(date +%s)
"${mulli[@]}" sim record --suite "$suite" --episodes $((source_per_task * n_tasks)) \
    --width 64 --height 64 --seed 0 --out "$out/source"
t_record=$(($(date +%s) - start))

start=$(date +%s)
"${mulli[@]}" synth --source "$out/source" --out "$out/generated" \
    --per-task "$generated_per_task" --seed 0
t_synth=$(($(date +%s) - start))

for arm in source generated; do
    data=(--data "$out/source")
    [[ $arm == generated ]] && data+=(--data "$out/generated")
    start=$(date +%s)
    "${mulli[@]}" train "${data[@]}" --out "$out/run-$arm" --config "$out/train.toml"
    echo "$(($(date +%s) - start))" >"$out/run-$arm.seconds"
    "${mulli[@]}" eval --policy "$out/run-$arm" --suite "$suite" --split held_out_layouts \
        --episodes "$episodes" --videos 1 --out "$out/eval-$arm"
done

python3 - "$out" "$t_record" "$t_synth" <<'EOF'
import json, sys
out, t_record, t_synth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
synth = json.load(open(f"{out}/generated/synth_report.json"))
def scores(arm):
    info = json.load(open(f"{out}/eval-{arm}/eval_info.json"))
    return {s["task"]: (s["successes"], s["episodes"]) for s in info["scores"]}
src, gen = scores("source"), scores("generated")
per_task = synth["per_task"]
rows, lifts = [], []
print("| task | source only | + generated | lift (points) | synth yield |")
print("|---|---|---|---|---|")
for task in src:
    (a, n), (b, m) = src[task], gen[task]
    lift = 100 * (b / m - a / n)
    lifts.append(lift)
    y = per_task.get(task, {})
    yld = y.get("yield")
    yld = f"{100 * yld:.0f}%" if isinstance(yld, (int, float)) else "?"
    print(f"| {task} | {a}/{n} | {b}/{m} | {lift:+.0f} | {yld} |")
    rows.append({"task": task, "source": [a, n], "generated": [b, m], "lift_points": lift, "yield": y.get("yield")})
mean = sum(lifts) / len(lifts)
tot = lambda d: 100 * sum(v[0] for v in d.values()) / sum(v[1] for v in d.values())
print(f"| **all** | {tot(src):.1f}% | {tot(gen):.1f}% | **{mean:+.1f}** | |")
secs = {arm: int(open(f"{out}/run-{arm}.seconds").read()) for arm in ("source", "generated")}
json.dump({"tasks": rows, "mean_lift_points": mean, "source_pc": tot(src), "generated_pc": tot(gen),
           "seconds": {"record": t_record, "synth": t_synth, "train": secs}}, open(f"{out}/lift.json", "w"), indent=2)
print(f"record {t_record} s, synth {t_synth} s, train {secs} s → {out}/lift.json")
EOF
