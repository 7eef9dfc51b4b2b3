#!/bin/bash
# mead-experiment sweep --slurm on a real one-machine Slurm cluster: munged,
# slurmctld and slurmd started here with a generated slurm.conf, every path
# in a scratch folder, stopped on every exit path.  A 2-point x 2-seed sweep
# is submitted as a job array, one element is cancelled while it waits, the
# gather reports it missing, and the same command again resubmits that one
# task alone and leaves the finished rows as they were.
# Needs root (the daemons), Debian's slurm-wlm and munge; exits 77 without.
set -u
exp=$1 src=$2
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; for f in "$scratch"/*.log "$sweep"/logs/*; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done; exit 1; }

[ "$(id -u)" = 0 ] || skip "the Slurm and munge daemons need root"
for c in munged munge unmunge slurmctld slurmd sbatch squeue scancel sinfo runuser; do
	command -v "$c" >/dev/null || skip "$c is not installed (apt-get install slurm-wlm munge)"
done
id munge >/dev/null 2>&1 || skip "no munge user (the munge package creates it)"
[ -r /etc/munge/munge.key ] || skip "no /etc/munge/munge.key (the munge package creates it)"

scratch=$(mktemp -d /tmp/mead-slurm-XXXXXX)
chmod 755 "$scratch"
sweep=$scratch/sweep
pids() { for f in "$scratch"/slurmd.pid "$scratch"/slurmctld.pid "$scratch"/munge/munged.pid; do [ -s "$f" ] && cat "$f"; done; }
cleanup() {
	# the daemons by the pids they wrote, munged last (slurm needs it to stop cleanly)
	for f in "$scratch"/slurmd.pid "$scratch"/slurmctld.pid "$scratch"/munge/munged.pid; do
		[ -s "$f" ] || continue
		p=$(cat "$f")
		kill "$p" 2>/dev/null || continue
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# munge on its own socket, key and files
m=$scratch/munge
mkdir -p "$m"
cp /etc/munge/munge.key "$m/munge.key"
chown -R munge:munge "$m"
chmod 755 "$m"   # munged: the socket's folder must be searchable by all
chmod 400 "$m/munge.key"
sock=$m/munge.socket
runuser -u munge -- munged --socket="$sock" --key-file="$m/munge.key" --pid-file="$m/munged.pid" \
	--log-file="$m/munged.log" --seed-file="$m/munged.seed" || skip "munged does not start: $(tail -n 3 "$m/munged.log" 2>/dev/null)"
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
munge -n -S "$sock" | unmunge -S "$sock" | grep -q 'STATUS: *Success' || skip "munge does not answer on $sock"

host=$(hostname -s)
port=$((20000 + $$ % 20000))
export SLURM_CONF=$scratch/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=meadtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MaxArraySize=5
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$scratch/slurmctld.pid
SlurmdPidFile=$scratch/slurmd.pid
SlurmctldLogFile=$scratch/slurmctld.log
SlurmdLogFile=$scratch/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$scratch/state" "$scratch/spool"
slurmctld || skip "slurmctld does not start: $(tail -n 3 "$scratch/slurmctld.log" 2>/dev/null)"
slurmd || skip "slurmd does not start: $(tail -n 3 "$scratch/slurmd.log" 2>/dev/null)"
up=0
for _ in $(seq 60); do
	sinfo -h -N -o '%T' 2>/dev/null | grep -q '^idle' && { up=1; break; }
	sleep 0.5
done
[ "$up" = 1 ] || skip "the node does not come up idle in 30 s: $(sinfo -h -N 2>&1 | head -n 2); $(tail -n 3 "$scratch/slurmctld.log")"
echo "cluster up: $(sinfo -h -N -o '%N %T %c')"

small=(-o protocol.mnist.train_size=20 -o protocol.mnist.test_size=20 -o protocol.mnist.validation_size=10)
cmd=("$exp" sweep -c "$src/config/twin-mnist-tsk.yaml" -d "$sweep" "${small[@]}"
	-p driver.options.exc_strength=2,4 --seeds 2 --slurm --max-running 1 --sbatch-arg=--time=10)

# submit, and cancel the last element while the throttle holds it back
out=$("${cmd[@]}" --no-wait 2>&1) || fail "submit: $out"
echo "$out"
job=$(awk '{print $1; exit}' "$sweep/slurm-jobs")
[ -n "$job" ] || fail "no job id in $sweep/slurm-jobs"
grep -q -- '--array=' "$sweep/slurm-jobs" && fail "slurm-jobs holds options, not the array: $(cat "$sweep/slurm-jobs")"
[ "$(awk '{print $2; exit}' "$sweep/slurm-jobs")" = "0-3%1" ] || fail "first array: $(cat "$sweep/slurm-jobs")"
grep -q '^#SBATCH --array' "$sweep/sweep.sbatch" && fail "the array belongs on the command line"
grep -q '^#SBATCH --time=10$' "$sweep/sweep.sbatch" || fail "--sbatch-arg not in the script: $(cat "$sweep/sweep.sbatch")"
out=$("${cmd[@]}" --no-wait 2>&1)
[ $? = 1 ] && echo "$out" | grep -q "job $job of this sweep is still queued or running" \
	|| fail "a rerun while the job is queued: $out"
[ "$(wc -l < "$sweep/slurm-jobs")" = 1 ] || fail "submitted twice: $(cat "$sweep/slurm-jobs")"
scancel "${job}_3" || fail "scancel ${job}_3"
for _ in $(seq 240); do
	[ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
	sleep 0.5
done
[ -z "$(squeue -h -j "$job" 2>/dev/null)" ] || fail "job $job still queued after 120 s: $(squeue -j "$job")"

out=$("$exp" sweep --gather "$sweep" 2>&1)
rc=$?
echo "$out"
[ "$rc" = 3 ] || fail "gather with a cancelled task: status $rc, expected 3"
echo "$out" | grep -q "^missing: task 3 (point 1, seed 2): no row .*; Slurm log $sweep/logs/slurm-${job}_3.out (absent: it never started)$" || fail "the cancelled task is not reported"
for t in 0 1 2; do [ -s "$sweep/rows/task-$t.json" ] || fail "no row for task $t"; done
[ -e "$sweep/rows/task-3.json" ] && fail "task 3 ran although cancelled"
[ "$(grep -c ',ok$' "$sweep/results.csv")" = 3 ] || fail "results.csv: $(cat "$sweep/results.csv")"
grep -q '^3,1,4,2,,,,,,,missing$' "$sweep/results.csv" || fail "task 3's row: $(cat "$sweep/results.csv")"
before=$(stat -c '%n %Y.%y' "$sweep"/rows/task-[012].json)

# the same command resumes: only task 3 is submitted, and the gather is whole
sleep 1.1   # a rewritten row would show in its mtime
out=$("${cmd[@]}" 2>&1) || fail "resume: $out"
echo "$out"
[ "$(sed -n 2p "$sweep/slurm-jobs" | awk '{print $2}')" = "3%1" ] || fail "resubmitted array: $(cat "$sweep/slurm-jobs")"
[ "$(stat -c '%n %Y.%y' "$sweep"/rows/task-[012].json)" = "$before" ] || fail "finished rows were rewritten"
[ -s "$sweep/rows/task-3.json" ] || fail "task 3 did not run on resume"
[ "$(grep -c ',ok$' "$sweep/results.csv")" = 4 ] || fail "results.csv after resume: $(cat "$sweep/results.csv")"
job2=$(sed -n 2p "$sweep/slurm-jobs" | awk '{print $1}')
[ -s "$sweep/logs/slurm-${job2}_3.out" ] || fail "no Slurm log for the resumed task: $(ls "$sweep/logs")"
grep -q 'task 3 (point 1, seed 2): ok' "$sweep/logs/slurm-${job2}_3.out" || fail "task log: $(cat "$sweep/logs/slurm-${job2}_3.out")"
/usr/bin/python3 - "$sweep/results.json" <<'PY' || fail "results.json"
import json, sys
j = json.load(open(sys.argv[1]))
assert [(r["point"], r["seed"], r["status"]) for r in j["rows"]] == [(0, 1, "ok"), (0, 2, "ok"), (1, 1, "ok"), (1, 2, "ok")], j["rows"]
assert [r["params"]["driver.options.exc_strength"] for r in j["rows"]] == ["2", "2", "4", "4"]
assert j["best"]["point"] in (0, 1) and j["best"]["seeds_ok"] == 2, j["best"]
for r in j["rows"]:
    assert 0 <= r["accuracy"] <= 1 and r["n"] == 20, r
PY

# a task that fails under Slurm: its element fails, the gather names it with both logs
out=$("$exp" sweep -c "$src/config/twin-mnist-tsk.yaml" -d "$scratch/fail" "${small[@]}" -p driver.options.exc_strength=2,abc \
	--slurm 2>&1)
rc=$?
echo "$out" | grep -v '^mead:'
[ "$rc" = 3 ] || fail "a failing task under Slurm: status $rc"
fjob=$(awk '{print $1; exit}' "$scratch/fail/slurm-jobs")
echo "$out" | grep -q "^failed: task 1 (point 1, seed 1): mead-experiment mnist ended with status [0-9]*; log $scratch/fail/logs/task-1.log; Slurm log $scratch/fail/logs/slurm-${fjob}_1.out$" \
	|| fail "the failed task's report"
grep -q 'task 1 (point 1, seed 1): failed' "$scratch/fail/logs/slurm-${fjob}_1.out" || fail "its Slurm log"

# a sweep whose task numbers the cluster's arrays cannot hold is refused before sbatch
out=$("$exp" sweep -c "$src/config/twin-mnist-tsk.yaml" -d "$scratch/big" "${small[@]}" -p driver.options.exc_strength=2,4,6 \
	--seeds 2 --slurm 2>&1)
[ $? = 1 ] || fail "6 tasks with MaxArraySize=5: $out"
echo "$out" | grep -q "task 5 is beyond this cluster's MaxArraySize (5)" || fail "MaxArraySize message: $out"
[ -e "$scratch/big/slurm-jobs" ] && fail "submitted anyway"
echo "slurm sweep: cancelled task resubmitted alone, 4/4 rows"
exit 0
