#!/bin/bash
# One quiet window: ours and the peers, LeNet then MLP, interleaved (ours, peers, ours).
# Waits for the MLP Table-1 pipelines to end; the LeNet chain waits on PAUSE meanwhile.
while pgrep -f "reproduce_table1.py --root=/work/table1_runs/main --archs=mlp" >/dev/null || pgrep -f ablation.sh >/dev/null; do sleep 10; done
O=/work/sbs; cd /work/main
echo "$(date +%T) start; load $(cat /proc/loadavg)" > $O/log
ours() { PYTHONPATH=/work/main .venv/bin/python scripts/benchmark.py --archs=$1 --rounds=5 --block_seconds=0.5 --out=$O/ours_$1_$2.json > $O/ours_$1_$2.txt 2>&1; echo "$(date +%T) ours $1 $2 rc=$?" >> $O/log; }
peers() { (cd /work/shared/peerbench && PEERBENCH=/work/peerbench ROUNDS=1 WORKLOAD=$1 bash run_all.sh $O/peers_$1.jsonl > $O/peers_$1.txt 2>&1); echo "$(date +%T) peers $1 rc=$?" >> $O/log; }
ours lenet a; peers lenet; ours lenet b
ours mlp a; peers mlp; ours mlp b
echo "$(date +%T) end; load $(cat /proc/loadavg)" >> $O/log
rm -f /work/table1_runs/PAUSE
