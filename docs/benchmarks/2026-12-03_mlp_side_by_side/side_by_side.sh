#!/bin/bash
# One quiet window for the MLP workload: ours (run a), the peers (../shared/peerbench/run_all.sh,
# ROUNDS=1 WORKLOAD=mlp), ours again (run b). Any training job named in $PAUSE_PID is stopped
# (SIGSTOP) for the window and continued afterwards, so the 2 cores are otherwise idle.
# Usage: [PEERBENCH=<peer venvs>] PAUSE_PID=<pid> bash side_by_side.sh OUT_DIR   (from the repository root)
set -u
O=$1; mkdir -p "$O"
[ -n "${PAUSE_PID:-}" ] && kill -STOP "$PAUSE_PID"
trap '[ -n "${PAUSE_PID:-}" ] && kill -CONT "$PAUSE_PID"' EXIT
echo "$(date +%T) start; load $(cat /proc/loadavg)" > "$O/log"
ours() { PYTHONPATH=$PWD .venv/bin/python scripts/benchmark.py --archs=mlp --rounds=5 --block_seconds=0.5 --out="$O/ours_mlp_$1.json" > "$O/ours_mlp_$1.txt" 2>&1; echo "$(date +%T) ours mlp $1 rc=$?" >> "$O/log"; }
peers() { (cd ../shared/peerbench && PEERBENCH=${PEERBENCH:-/work/peerbench} ROUNDS=1 WORKLOAD=mlp bash run_all.sh "$OLDPWD/$O/peers_mlp.jsonl" > "$OLDPWD/$O/peers_mlp.txt" 2>&1); echo "$(date +%T) peers mlp rc=$?" >> "$O/log"; }
ours a; peers; ours b
echo "$(date +%T) end; load $(cat /proc/loadavg)" >> "$O/log"
