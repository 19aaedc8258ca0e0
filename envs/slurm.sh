#!/usr/bin/env bash
# A single-node SLURM test cluster on this machine: enough to run the workflow through
# snakemake-executor-plugin-slurm (configs/slurm/) exactly as on a real cluster.  Debian/Ubuntu, as root
# (or with sudo); no systemd needed, so it works in containers and CI too.
#
#   bash envs/slurm.sh            install slurm-wlm + munge with apt if missing, write the config, start
#                                 munged, slurmctld and slurmd, wait until the node is idle (idempotent:
#                                 a running cluster with the same config is left alone)
#   bash envs/slurm.sh stop       stop the three daemons
#   bash envs/slurm.sh status     the daemons, the node and the queue
#
# What it writes (nothing else on the machine is touched):
#   /etc/slurm/slurm.conf         one node (this host: CPUs and RealMemory as `slurmd -C` measures them),
#                                 one partition `debug` (default), select/cons_tres with cores as the
#                                 consumable, no cgroups (proctrack/linuxproc, task/none), no accounting
#                                 database (accounting_storage/none: the executor plugin reads job states
#                                 with `squeue`, so jobs stay listed for MinJobAge=600 s after they end)
#   /etc/slurm/gres.conf          only where NVIDIA GPUs are present (/dev/nvidia0...): `Gres=gpu:N`, so
#                                 jobs that ask `--gpus=1` (the rule resource gpu=1) get one
#   /etc/munge/munge.key          only if missing (the Debian package normally creates it)
#   /var/log/slurm/{slurmctld,slurmd}.log   the daemons' logs: look there first when something fails
# An existing /etc/slurm/slurm.conf that this script did not write is never overwritten (set
# NNXAI_SLURM_FORCE=1 to replace it).  Environment: NNXAI_SLURM_WAIT (seconds to wait for the node, 90).
set -euo pipefail

MARKER="# written by nnxai envs/slurm.sh"
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm
WAIT=${NNXAI_SLURM_WAIT:-90}

say() { echo "envs/slurm.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
  die "needs root (or sudo) to install packages and start the daemons"; fi
run() { say "+ $*"; "${SUDO[@]}" "$@" 9>&-; }   # 9>&-: the daemons must not inherit the lock below

# One caller at a time (two test runs may start the cluster together); the lock goes with this process.
exec 9>>/tmp/nnxai-slurm.lock
flock -w 300 9 || die "another envs/slurm.sh has held /tmp/nnxai-slurm.lock for 5 minutes"

alive() {   # alive PID: the process runs (a zombie does not)
  local state; state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$state" ] && [[ $state != Z* ]]
}

pid_alive() {   # pid_alive PIDFILE: the process named in PIDFILE runs
  local pid; pid=$("${SUDO[@]}" cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid"
}

stop_pidfile() {   # stop_pidfile NAME PIDFILE: TERM the process, wait up to 10 s, then KILL it
  local pid; pid=$("${SUDO[@]}" cat "$2" 2>/dev/null) || { say "$1 not running"; return 0; }
  if [ -n "$pid" ] && alive "$pid"; then
    say "stopping $1 (pid $pid)"
    "${SUDO[@]}" kill "$pid" || true
    for _ in $(seq 20); do alive "$pid" || break; sleep 0.5; done
    if alive "$pid"; then say "$1 ignored TERM: KILL"; "${SUDO[@]}" kill -9 "$pid" || true; fi
  else
    say "$1 not running"
  fi
  "${SUDO[@]}" rm -f "$2"
}

stop_all() {
  stop_pidfile slurmd /run/slurmd.pid
  stop_pidfile slurmctld /run/slurmctld.pid
  stop_pidfile munged /run/munge/munged.pid
}

node_state() {   # the node's state as sinfo prints it (idle, mix, alloc, down*, drain, ...), empty if no answer
  timeout 10 sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -1 || true
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status)
    for d in munged:/run/munge/munged.pid slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid; do
      if pid_alive "${d#*:}"; then say "${d%%:*} running (pid $("${SUDO[@]}" cat "${d#*:}"))"; else say "${d%%:*} not running"; fi
    done
    command -v sinfo >/dev/null && { sinfo -N -l || true; squeue || true; }
    exit 0 ;;
  start) ;;
  *) die "usage: bash envs/slurm.sh [start|stop|status]" ;;
esac

# 1. Packages: slurm-wlm (slurmctld, slurmd, client commands) and munge (authentication).
if ! command -v sinfo >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurm-wlm is not installed and there is no apt-get: install SLURM and munge by hand"
  say "installing slurm-wlm and munge with apt (a minute or two)"
  run apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# 2. The node, as slurmd measures it (CPUs, sockets, cores, threads, RealMemory).
NODE=$(hostname -s)
MEASURED=$("${SUDO[@]}" slurmd -C | head -1)   # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ... RealMemory=24105
[[ $MEASURED == NodeName=* ]] || die "slurmd -C printed '$MEASURED'"
NODE_SPEC=$(sed -E "s/^NodeName=[^ ]+//; s/ Boards=[0-9]+//" <<<"$MEASURED")
NGPU=$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l || true)
GRES_LINE=""; NODE_GRES=""
if [ "$NGPU" -gt 0 ]; then GRES_LINE="GresTypes=gpu"; NODE_GRES=" Gres=gpu:$NGPU"; fi

CONF_TEXT="$MARKER; rerun it to rewrite this file for this host
ClusterName=nnxai
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# no cgroups, no systemd: processes are tracked through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# cores are the consumable resource (memory requests are checked against RealMemory, not reserved)
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# no accounting database: job states come from slurmctld (squeue), kept MinJobAge seconds after the end
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
InactiveLimit=0
MailProg=/bin/true
KillWait=10
Waittime=0
$GRES_LINE
NodeName=$NODE NodeAddr=127.0.0.1$NODE_SPEC$NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"

GRES_TEXT=""
if [ "$NGPU" -gt 0 ]; then
  GRES_TEXT="$MARKER
NodeName=$NODE Name=gpu File=/dev/nvidia[0-$((NGPU - 1))]"
fi

# 3. The config: leave a foreign one alone; rewrite ours only if it changed (then restart the daemons).
changed=0
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ "${NNXAI_SLURM_FORCE:-0}" != 1 ]; then
  die "$CONF exists and was not written by this script; not touching it (NNXAI_SLURM_FORCE=1 replaces it)"
fi
if [ "$("${SUDO[@]}" cat "$CONF" 2>/dev/null || true)" != "$CONF_TEXT" ]; then
  say "writing $CONF for node $NODE:$NODE_SPEC$NODE_GRES"
  "${SUDO[@]}" mkdir -p /etc/slurm
  printf '%s\n' "$CONF_TEXT" | "${SUDO[@]}" tee "$CONF" >/dev/null
  changed=1
fi
if [ -n "$GRES_TEXT" ]; then
  if [ "$("${SUDO[@]}" cat "$GRES_CONF" 2>/dev/null || true)" != "$GRES_TEXT" ]; then
    say "writing $GRES_CONF ($NGPU GPU(s))"; printf '%s\n' "$GRES_TEXT" | "${SUDO[@]}" tee "$GRES_CONF" >/dev/null; changed=1
  fi
elif [ -f "$GRES_CONF" ] && grep -qF "$MARKER" "$GRES_CONF"; then
  run rm -f "$GRES_CONF"; changed=1
fi

# 4. Directories and the munge key (owned by the users the daemons run as).
"${SUDO[@]}" install -d -o munge -g munge -m 0755 /run/munge
"${SUDO[@]}" install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
"${SUDO[@]}" install -d -o munge -g munge -m 0700 /etc/munge
if ! "${SUDO[@]}" test -s /etc/munge/munge.key; then
  say "creating /etc/munge/munge.key"
  "${SUDO[@]}" dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
"${SUDO[@]}" chown munge:munge /etc/munge/munge.key && "${SUDO[@]}" chmod 0400 /etc/munge/munge.key
"${SUDO[@]}" install -d -o slurm -g slurm -m 0755 "$LOGDIR" "$STATEDIR" "$STATEDIR/slurmctld"
"${SUDO[@]}" install -d -o root -g root -m 0755 "$STATEDIR/slurmd"

if [ "$changed" = 1 ] && { pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; }; then
  say "configuration changed: restarting slurmctld and slurmd"
  stop_pidfile slurmd /run/slurmd.pid
  stop_pidfile slurmctld /run/slurmctld.pid
fi

# 5. The daemons (each forks into the background and writes its pid file).
if pid_alive /run/munge/munged.pid; then say "munged already running"; else
  run runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 20); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n </dev/null | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

start_slurm() {   # start_slurm [-c]: -c starts slurmctld with a clean job state
  if pid_alive /run/slurmctld.pid; then say "slurmctld already running"; else run /usr/sbin/slurmctld "$@"; fi
  if pid_alive /run/slurmd.pid; then say "slurmd already running"; else run /usr/sbin/slurmd; fi
}
start_slurm

# 6. Wait until the node takes jobs; resume it once if it came up down/drained (e.g. after a restart).
say "waiting up to $WAIT s for node $NODE to be idle"
deadline=$(( $(date +%s) + WAIT )); resumed=0; restarted=0; state=""
while :; do
  state=$(node_state)
  case "$state" in
    idle|mix|alloc|comp) break ;;
    down*|drain*|drng*|fail*)
      if [ "$resumed" = 0 ]; then
        say "node is '$state': resuming it"; "${SUDO[@]}" scontrol update nodename="$NODE" state=resume || true; resumed=1
      fi ;;
  esac
  if [ "$(date +%s)" -ge $(( deadline - WAIT / 2 )) ] && [ "$restarted" = 0 ] && [ "$state" != idle ]; then
    # half the wait gone: a daemon may have died (stale pid file, port still in use) or left ghost jobs
    # behind after a crash; restart both once, dropping the controller's saved job state (-c)
    say "node still '${state:-no answer}': restarting the SLURM daemons once, with a clean job state"
    stop_pidfile slurmd /run/slurmd.pid; stop_pidfile slurmctld /run/slurmctld.pid; sleep 1; start_slurm -c
    restarted=1; resumed=0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "last lines of $LOGDIR/slurmctld.log and slurmd.log:"
    "${SUDO[@]}" tail -n 15 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
    die "node $NODE is '${state:-no answer}' after $WAIT s"
  fi
  sleep 1
done
say "ready: node $NODE is '$state' in partition debug ($(sinfo -h -o '%c CPUs, %m MB' -p debug))"
say "try: srun hostname   |   snakemake --profile configs/slurm --config profile=smoke"
