#!/usr/bin/env bash
# Benchmark of `analyzer attach` beside a load run, against tools users would pick
# instead (tcpdump, bcc's tcplife/tcpretrans, a bpftrace tcplife on the tracepoint).
#
#   bash bench/analyzer.sh           # from the repository root, as root
#
# What it does, in order:
#   1. installs what is missing (nginx, tcpdump, bpftrace, bpfcc-tools, wrk, GNU time,
#      python3, taskset, perf), skipping what is there;
#   2. builds the release eBPF object, `analyzer`, `loadgen` and `testbed`, and copies the
#      two binaries it runs aside, so a rebuild during the run cannot swap them;
#   3. starts its own nginx (own config, pid file and logs in a temp dir; not the system
#      service) on 127.0.0.1:PORT with one worker pinned to CPU 0 (`return 200 "ok"`);
#   4. tries bcc's tcplife-bpfcc and tcpretrans-bpfcc once; they compile C at run time
#      and need kernel headers: if they fail, the error is recorded and they are left out;
#   5. runs loadgen pinned to CPU 1 with, in turn (rounds interleaved: none, analyzer,
#      tcpdump, bpftrace, [bcc], none, ...), nothing attached, `analyzer attach --port
#      PORT --quiet --out r.json` (stopped with SIGTERM), `tcpdump -i lo -w x.pcap port
#      PORT`, and `bpftrace` running a tcplife on the `sock:inet_sock_set_state`
#      tracepoint (bpftrace's own tcplife.bt needs kprobes). The observers are not
#      pinned. Three phases:
#        keepalive  HTTP/1.1 keep-alive, 50 users on 50 connections, max rate (MAX_DUR s)
#        churn      --no-keepalive (a new connection per request), open model at each of
#                   CHURN_RATES for CHURN_DUR s
#        churnmax   the same churn from `wrk -t1 -c50 -H 'Connection: close'` (wrk
#                   reconnects after each response) at the most it reaches, CHURN_DUR s:
#                   loadgen tops out near 9,000 new connections/s on one core here
#      kernel.bpf_stats_enabled=1 during churn and churnmax (restored after), so the
#      programs' own run time is read from the observers' fdinfo. Then a burst test of
#      the analyzer alone: SIGSTOP it, churn with wrk for BURST_DUR s (the 16 MiB ring
#      overflows), SIGCONT it and time the drain: ring capacity, loss accounting, and
#      its drain rate (events per CPU-second), the ceiling no generator here reaches;
#      then, with PROFILE=1 (default), `perf record -g -p ANALYZER` and `perf record -a -g`
#      during a churn run at the highest rate, and one RSS run of the analyzer:
#      RSS_DUR s at RSS_RATE new connections/s;
#   6. writes raw rows to out/bench/analyzer-<date>.tsv, the Markdown tables (medians,
#      ratios) to out/bench/analyzer-<date>.md, profiles to out/bench/perf-analyzer-*-<date>.txt,
#      and prints the tables.
#
# Per run it records loadgen's summary (req/s, new connections/s, late and skipped
# requests), the observer's user+sys CPU over the load window (from /proc/PID/stat just
# before and after the load, so attach and report costs are apart), what it recorded
# (analyzer: events and "lost in kernel" from its final stderr line and run.lost_events
# in report.json; tcpdump: packets captured and dropped by kernel; bpftrace/bcc: lines and
# "Lost N events"), its BPF programs' run time (fdinfo run_time_ns, churn phase only),
# the busy time of both CPUs, nginx's CPU, and peak RSS.
#
# Knobs (environment): ROUNDS (3), KA_ROUNDS (5, keep-alive rounds), MAX_DUR (5),
# CHURN_DUR (5), CHURN_RATES ("2000 5000 10000 20000"), CHURN_CONNS (256, loadgen
# --connections), WRK_CHURN (1), WRK_CONNS (50), BURST (1), BURST_DUR (3), RSS_DUR (60),
# RSS_RATE (5000), PORT (18490), PROFILE (1), TOOLS ("none analyzer tcpdump bpftrace";
# bcc is added when it works), SKIP_INSTALL=1, SKIP_BUILD=1. Tools run in a different
# order each round (rotated). TOOLS may also name `raw` (`analyzer attach --backend raw`,
# the AF_PACKET capture) and `raw-base` (the same with the analyzer binary given as
# BASE_ANALYZER=/path, e.g. built from an older commit in a worktree): the ratios then
# include each one's CPU per captured packet divided by tcpdump's in the same run.
#
# Traffic goes to 127.0.0.1 only. Every loop is bounded (rounds x rates x tools, and
# every wait has a limit); every run is under `timeout`. Ctrl-C or any exit stops every
# process the script started, restores the sysctl and removes the temp dir (pcaps too).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}
MAX_DUR=${MAX_DUR:-5}
CHURN_DUR=${CHURN_DUR:-5}
CHURN_RATES=${CHURN_RATES:-"2000 5000 10000 20000"}
CHURN_CONNS=${CHURN_CONNS:-256}
RSS_DUR=${RSS_DUR:-60}
RSS_RATE=${RSS_RATE:-5000}
PORT=${PORT:-18490}
PROFILE=${PROFILE:-1}
TOOLS=${TOOLS:-"none analyzer tcpdump bpftrace"}
WRK_CHURN=${WRK_CHURN:-1}
BURST=${BURST:-1}
BURST_DUR=${BURST_DUR:-3}
KA_ROUNDS=${KA_ROUNDS:-5}
WRK_CONNS=${WRK_CONNS:-50}
SERVER_CPU=0
CLIENT_CPU=1
KA_USERS=50
PY=/usr/bin/python3

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, eBPF, tcpdump)"
(( $(nproc) >= 2 )) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU)"

# ---------------------------------------------------------------------------- install
install_tools() {
    local missing=() cmd pkg
    for pair in nginx:nginx tcpdump:tcpdump bpftrace:bpftrace wrk:wrk /usr/sbin/tcplife-bpfcc:bpfcc-tools \
                /usr/bin/time:time $PY:python3 taskset:util-linux ss:iproute2 pgrep:procps \
                perf:linux-perf; do
        cmd=${pair%%:*} pkg=${pair#*:}
        if command -v "$cmd" >/dev/null 2>&1; then
            log "have $cmd"
        else
            missing+=("$pkg")
        fi
    done
    if (( ${#missing[@]} )); then
        log "installing: apt-get install -y ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    install_tools
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building: cargo xtask build-ebpf --release && cargo build --release -p analyzer-user -p loadgen -p faultline-tests"
    cargo xtask build-ebpf --release
    cargo build --release -p analyzer-user -p loadgen -p faultline-tests
fi
[[ -x target/release/analyzer && -x target/release/loadgen ]] || die "no release binaries in target/release"

# ---------------------------------------------------------------------------- set-up
TMP=$(mktemp -d /tmp/analyzer-bench.XXXXXX)
NGINX_PID=""
CHILD=""
TOOL_PID=""
TOOL_WRAP=""
PERF_PIDS=()
STATS_WAS=""
stop_pid() { # PID SIGNAL SECONDS: signal, wait up to SECONDS, then SIGKILL
    local pid=$1 sig=$2 secs=$3 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PERF_PIDS[@]}"; do stop_pid "$p" INT 5; done
    [[ -n $CHILD ]] && stop_pid "$CHILD" TERM 5
    if [[ -n $TOOL_PID ]]; then
        kill -CONT "$TOOL_PID" 2>/dev/null || true
        stop_pid "$TOOL_PID" TERM 10
    fi
    [[ -n $TOOL_WRAP ]] && stop_pid "$TOOL_WRAP" TERM 5
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        log "stopping nginx (pid $NGINX_PID)"
        stop_pid "$NGINX_PID" TERM 3
    fi
    if [[ -n $STATS_WAS ]]; then
        sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

AN=$TMP/analyzer LOADGEN=$TMP/loadgen
cp target/release/analyzer "$AN"
AN_BASE=$TMP/analyzer-base
if [[ -n ${BASE_ANALYZER:-} ]]; then cp "$BASE_ANALYZER" "$AN_BASE"; fi
cp target/release/loadgen "$LOADGEN"
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- analyzer-user analyzer-ebpf analyzer-common loadgen 2>/dev/null) ]]; then
    REV="$REV+dirty"
fi

[[ -z $(ss -Hltn "sport = :$PORT") ]] || die "port $PORT is in use: set PORT"
for other in bench/loadgen.sh; do
    if pgrep -f "$other" >/dev/null; then
        log "warning: $other is running on this machine: the numbers will be disturbed"
    fi
done

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" -t -q
log "starting nginx on 127.0.0.1:$PORT, 1 worker on CPU $SERVER_CPU"
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 50); do
    [[ -s $TMP/nginx.pid ]] && [[ -n $(ss -Hltn "sport = :$PORT") ]] && break
    sleep 0.1
done
[[ -s $TMP/nginx.pid ]] || die "nginx did not start: $(cat "$TMP/nginx/error.log")"
NGINX_WORKER=""
for _ in $(seq 1 50); do
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
    [[ -n $NGINX_WORKER ]] && break
    sleep 0.1
done
[[ -n $NGINX_WORKER ]] || die "no nginx worker"
URL=http://127.0.0.1:$PORT/

# A tcplife on the tracepoint (bpftrace's tcplife.bt hooks kprobe:tcp_set_state, which
# needs kprobe_events): one line per closed socket, like tcplife.
cat >"$TMP/tcplife.bt" <<EOF
tracepoint:sock:inet_sock_set_state
/args->protocol == IPPROTO_TCP && (args->sport == $PORT || args->dport == $PORT)/
{
    if (args->newstate < TCP_FIN_WAIT1 && @birth[args->skaddr] == 0) {
        @birth[args->skaddr] = nsecs;
    }
    if (args->newstate == TCP_CLOSE && @birth[args->skaddr]) {
        printf("%d %s %s %d %s %d %d\n", pid, comm, ntop(args->saddr), args->sport,
            ntop(args->daddr), args->dport, (nsecs - @birth[args->skaddr]) / 1000000);
        delete(@birth[args->skaddr]);
    }
}
END { clear(@birth); }
EOF

# ---------------------------------------------------------------------------- observers
# tool_cmd TOOL -> CMD (argv), READY (regex on stdout+stderr once attached), STOPSIG
tool_cmd() {
    case $1 in
        analyzer) CMD=("$AN" attach --port "$PORT" --quiet --out "$TMP/r.json")
                  READY='^attached:' STOPSIG=TERM ;;
        raw | raw-base)
                  local bin=$AN
                  [[ $1 == raw-base ]] && bin=$AN_BASE
                  [[ -x $bin ]] || die "$1: no binary (set BASE_ANALYZER)"
                  CMD=("$bin" attach --backend raw --port "$PORT" --quiet --out "$TMP/r.json")
                  READY='^attached:' STOPSIG=TERM ;;
        tcpdump)  CMD=(tcpdump -i lo -n -Z root -w "$TMP/x.pcap" port "$PORT")
                  READY='listening on' STOPSIG=TERM ;;
        bpftrace) CMD=(bpftrace "$TMP/tcplife.bt")
                  READY='^Attaching' STOPSIG=INT ;;
        tcplife-bcc) CMD=(env PYTHONUNBUFFERED=1 /usr/sbin/tcplife-bpfcc -L "$PORT")
                  READY='^PID' STOPSIG=INT ;;
        tcpretrans-bcc) CMD=(env PYTHONUNBUFFERED=1 /usr/sbin/tcpretrans-bpfcc)
                  READY='^(TIME|Tracing)' STOPSIG=INT ;;
        *) die "unknown tool $1" ;;
    esac
}

# tool_start TOOL: starts it under GNU time, sets TOOL_PID (the tool itself) and
# TOOL_WRAP (time); returns 1 if it did not get ready in 60 s (or exited).
tool_start() {
    tool_cmd "$1"
    rm -f "$TMP/tool.out" "$TMP/tool.err" "$TMP/tool.time" "$TMP/r.json" "$TMP/x.pcap"
    /usr/bin/time -o "$TMP/tool.time" -f '%e %U %S %M' "${CMD[@]}" >"$TMP/tool.out" 2>"$TMP/tool.err" &
    TOOL_WRAP=$!
    TOOL_PID=""
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -z $TOOL_PID ]] && TOOL_PID=$(pgrep -P "$TOOL_WRAP" | head -1 || true)
        if [[ -n $TOOL_PID ]] && cat "$TMP/tool.out" "$TMP/tool.err" 2>/dev/null | grep -Eq "$READY"; then
            sleep 0.2
            return 0
        fi
        kill -0 "$TOOL_WRAP" 2>/dev/null || break
        sleep 0.1
    done
    log "$1 did not start: $(tail -c 600 "$TMP/tool.err" | tr '\n' ' ')"
    tool_stop
    return 1
}
tool_stop() {
    if [[ -n $TOOL_PID ]]; then stop_pid "$TOOL_PID" "$STOPSIG" 120; fi
    if [[ -n $TOOL_WRAP ]]; then
        stop_pid "$TOOL_WRAP" TERM 10
        wait "$TOOL_WRAP" 2>/dev/null || true
    fi
    TOOL_PID="" TOOL_WRAP=""
}

# tool_result TOOL -> "events lost note" from the tool's output after it stopped.
tool_result() {
    $PY - "$1" "$TMP" <<'EOF'
import json, os, re, sys
tool, tmp = sys.argv[1], sys.argv[2]
def rd(name):
    try:
        return open(os.path.join(tmp, name), errors="replace").read()
    except OSError:
        return ""
out, err = rd("tool.out"), rd("tool.err")
events, lost, note = -1, -1, "-"
if tool == "analyzer":
    m = re.search(r"^events: (\d+) \((.*?)\); lost in kernel: (\d+)", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(3))
        note = m.group(2).replace(" ", "=").replace(",=", ",")
    try:
        rl = json.load(open(os.path.join(tmp, "r.json")))["run"]["lost_events"]
        note += f",report_lost={rl}"
    except Exception as e:
        note += ",no_report_json"
elif tool in ("raw", "raw-base"):
    m = re.search(r"^capture: (\d+) packets on \S+, (\d+) dropped", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(2))
elif tool == "tcpdump":
    c = re.search(r"(\d+) packets captured", err)
    d = re.search(r"(\d+) packets dropped by kernel", err)
    if c:
        events = int(c.group(1))
    if d:
        lost = int(d.group(1))
    r = re.search(r"(\d+) packets received by filter", err)
    note = f"received_by_filter={r.group(1) if r else '?'}"
else:
    lines = [l for l in out.splitlines() if re.match(r"^\d+ ", l)]
    events = len(lines)
    ls = [int(x) for x in re.findall(r"(?:Lost|lost) (\d+) (?:events|samples)", out + err)]
    lost = sum(ls)
print(events, lost, note or "-")
EOF
}

# ---------------------------------------------------------------------------- sampling
CLK_TCK=$(getconf CLK_TCK)
# jiffies: "busy0 busy1 softirq0 softirq1" (busy: user nice system irq softirq steal)
cpu_sample() {
    awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '
        $1 == a { b0 = $2 + $3 + $4 + $7 + $8 + $9; s0 = $8 }
        $1 == b { b1 = $2 + $3 + $4 + $7 + $8 + $9; s1 = $8 }
        END { print b0, b1, s0, s1 }' /proc/stat
}
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# run_time_ns and run_cnt summed over the BPF programs a process holds
bpf_stats() {
    if [[ -z ${1:-} ]]; then echo "0 0"; return; fi
    cat /proc/"$1"/fdinfo/* 2>/dev/null |
        awk '/^run_time_ns:/ { t += $2 } /^run_cnt:/ { c += $2 } END { print t + 0, c + 0 }'
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Rss of the BPF map mappings (the 16 MiB ring buffer of the analyzer, read-only mapped)
bpfmap_rss_kb() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / { m = ($0 ~ /bpf-map|bpf_ringbuf|anon_inode:bpf/) }
         m && /^Rss:/ { s += $2 } END { print s + 0 }' "/proc/$1/smaps" 2>/dev/null || echo 0
}

DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/analyzer-$DATE.tsv
MD=out/bench/analyzer-$DATE.md
printf '%s\n' "date	phase	tool	round	target_rps	dur_s	ok	failed	late	skipped	conns_opened	req_s	conn_s	tool_cpu_s	tool_events	tool_lost	bpf_run_ns	bpf_run_cnt	tool_hwm_kb	tool_rss_anon_kb	tool_bpfmap_rss_kb	tool_maxrss_kb	tool_total_cpu_s	loadgen_cpu_s	nginx_cpu_s	cpu0_busy_s	cpu1_busy_s	softirq_s	window_s	loadavg1	rc	note" >"$TSV"

LG=("$LOADGEN" attack --quiet --report json --http1)

# run PHASE TOOL ROUND TARGET DUR CLIENT -- CLIENT-ARGS...: one load run with TOOL
# attached; CLIENT is loadgen or wrk. Returns 1 if TOOL could not be started (the row is
# not written).
run() {
    local phase=$1 tool=$2 round=$3 target=$4 dur=$5 client=$6
    shift 7
    local ccmd
    if [[ $client == wrk ]]; then ccmd=(wrk); else ccmd=("${LG[@]}"); fi
    local rc=0 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [[ $tool != none ]]; then
        tool_start "$tool" || return 1
    fi
    local cpu_a cpu_b t_a=0 t_b=0 ng_a ng_b bpf_a="0 0" bpf_b="0 0" hwm=0 anon=0 maprss=0 w_a w_b
    w_a=$(date +%s.%N)
    cpu_a=$(cpu_sample) ng_a=$(proc_cpu "$NGINX_WORKER")
    if [[ -n $TOOL_PID ]]; then t_a=$(proc_cpu "$TOOL_PID") bpf_a=$(bpf_stats "$TOOL_PID"); fi
    timeout -k 5 $((dur + 60)) taskset -c $CLIENT_CPU /usr/bin/time -o "$TMP/lg.time" -f '%e %U %S %M' \
        "${ccmd[@]}" "$@" >"$TMP/lg.json" 2>"$TMP/lg.err" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    cpu_b=$(cpu_sample) ng_b=$(proc_cpu "$NGINX_WORKER")
    if [[ -n $TOOL_PID ]]; then
        t_b=$(proc_cpu "$TOOL_PID") bpf_b=$(bpf_stats "$TOOL_PID")
        hwm=$(status_kb "$TOOL_PID" VmHWM) anon=$(status_kb "$TOOL_PID" RssAnon)
        maprss=$(bpfmap_rss_kb "$TOOL_PID")
    fi
    w_b=$(date +%s.%N)
    local events=0 lost=0 tnote="-" maxrss=0 tcpu=0
    if [[ $tool != none ]]; then
        tool_stop
        read -r events lost tnote < <(tool_result "$tool")
        local tw tu ts tm
        if read -r tw tu ts tm < <(grep -E '^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$' "$TMP/tool.time"); then
            maxrss=$tm tcpu=$($PY -c "print(f'{$tu + $ts:.2f}')")
        fi
        rm -f "$TMP/x.pcap"
    fi
    local lgline
    if ! lgline=$($PY - "$client" "$TMP/lg.json" "$TMP/lg.time" <<'EOF'
import json, re, sys
client, out, tf = sys.argv[1:4]
t = open(tf).read()
m = re.search(r"^[0-9.]+ ([0-9.]+) ([0-9.]+) [0-9]+$", t, re.M)
lcpu = float(m.group(1)) + float(m.group(2)) if m else float("nan")
if client == "wrk":
    # wrk with `Connection: close` reconnects after every response: one connection per
    # request (connect errors are counted as failures).
    text = open(out).read()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    total = int(m.group(1))
    dur = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(non2xx.group(1)) if non2xx else 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = sum(map(int, se.groups())) if se else 0
    ok, failed, late, skipped, opened = total - non2xx, non2xx + errs, 0, 0, total
    classes = f"wrk_socket_errors:{errs}"
else:
    d = json.load(open(out))
    codes = d.get("status_codes", {})
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    dur = d["duration_s"]
    ov = d.get("overload", {})
    opened = d["connections"]["opened"]
    failed, late, skipped = d["requests"]["failed"], ov.get("late", 0), ov.get("skipped", 0)
    classes = ",".join(f"{c['class']}:{c['count']}" for c in d.get("classes", [])) or "-"
print(ok, failed, late, skipped, opened,
      f"{ok / dur:.0f}", f"{opened / dur:.0f}", f"{dur:.3f}", f"{lcpu:.2f}", classes)
EOF
    ); then
        log "$phase $tool r$round: cannot read $client's output (rc $rc): $(tail -3 "$TMP/lg.err")"
        return 0
    fi
    local ok failed late skipped opened req_s conn_s ldur lcpu classes
    read -r ok failed late skipped opened req_s conn_s ldur lcpu classes <<<"$lgline"
    local derived
    derived=$($PY - "$cpu_a" "$cpu_b" "$t_a" "$t_b" "$ng_a" "$ng_b" "$bpf_a" "$bpf_b" "$w_a" "$w_b" "$CLK_TCK" <<'EOF'
import sys
a = list(map(float, sys.argv[1].split())); b = list(map(float, sys.argv[2].split()))
ta, tb, nga, ngb = map(float, sys.argv[3:7])
ba = list(map(int, sys.argv[7].split())); bb = list(map(int, sys.argv[8].split()))
wa, wb, hz = map(float, sys.argv[9:12])
print(f"{(tb - ta) / hz:.2f}", f"{(ngb - nga) / hz:.2f}", f"{(b[0] - a[0]) / hz:.2f}",
      f"{(b[1] - a[1]) / hz:.2f}", f"{(b[2] - a[2] + b[3] - a[3]) / hz:.2f}",
      bb[0] - ba[0], bb[1] - ba[1], f"{wb - wa:.2f}")
EOF
)
    local tcpu_w ngcpu c0 c1 si bpfns bpfcnt win
    read -r tcpu_w ngcpu c0 c1 si bpfns bpfcnt win <<<"$derived"
    local note="$tnote;lg=$classes"
    printf '%s\n' "$DATE	$phase	$tool	$round	$target	$ldur	$ok	$failed	$late	$skipped	$opened	$req_s	$conn_s	$tcpu_w	$events	$lost	$bpfns	$bpfcnt	$hwm	$anon	$maprss	$maxrss	$tcpu	$lcpu	$ngcpu	$c0	$c1	$si	$win	$load	$rc	$note" >>"$TSV"
    log "$(printf '%-9s %-9s r%s %6s/s -> %6s req/s %6s conn/s  late %s skip %s fail %s  tool cpu %ss  events %s lost %s  bpf %s ns  hwm %s kB' \
        "$phase" "$tool" "$round" "$target" "$req_s" "$conn_s" "$late" "$skipped" "$failed" "$tcpu_w" "$events" "$lost" "$bpfns" "$hwm")"
    return 0
}

# ---------------------------------------------------------------------------- bcc
# bcc's tools compile C at run time against the running kernel's headers.
BCC_NOTES=()
EXTRA_TOOLS=""
for t in tcplife-bcc tcpretrans-bcc; do
    log "trying $t"
    if tool_start "$t"; then
        tool_stop
        log "$t works: added to the runs"
        BCC_NOTES+=("bcc $t: works")
        [[ $t == tcplife-bcc ]] && EXTRA_TOOLS+=" tcplife-bcc"
    else
        err=$(cat "$TMP/tool.out" "$TMP/tool.err" | grep -E 'Unable to find kernel headers|chdir|^Exception|rror' |
              head -3 | tr -s ' \n' ' ' || true)
        BCC_NOTES+=("bcc $t: failed: ${err:-$(tail -c 300 "$TMP/tool.err" | tr -s ' \n' ' ')}")
    fi
done
# bpftrace's own tcplife.bt (kprobe:tcp_set_state): tried once for the record; the
# tracepoint script above stands in for it in the runs.
if [[ -r /usr/sbin/tcplife.bt ]]; then
    timeout -k 2 8 bpftrace /usr/sbin/tcplife.bt >"$TMP/bt.out" 2>&1 || true
    if grep -q '^ERROR' "$TMP/bt.out"; then
        BCC_NOTES+=("bpftrace's own tcplife.bt: failed: $(grep -E '^ERROR|open\(' "$TMP/bt.out" | grep -v RLIMIT_MEMLOCK | tr -s ' \n' ' ')")
    else
        BCC_NOTES+=("bpftrace's own tcplife.bt: attached")
    fi
fi
printf '%s\n' "${BCC_NOTES[@]}" >"$TMP/bcc.txt"
ALL_TOOLS="$TOOLS$EXTRA_TOOLS"

log "date $DATE, analyzer+loadgen $REV, $(nproc) CPUs, kernel $(uname -r), $ROUNDS rounds, tools: $ALL_TOOLS"

# The tools of round R, rotated by R - 1 so that no tool always runs first or after the
# same neighbour.
rotated() {
    local -a t
    read -r -a t <<<"$ALL_TOOLS"
    local n=${#t[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${t[$(((i + $1 - 1) % n))]}"; done
}

# ---------------------------------------------------------------------------- phase 1
for round in $(seq 1 "$KA_ROUNDS"); do
    for tool in $(rotated "$round"); do
        run keepalive "$tool" "$round" max "$MAX_DUR" loadgen -- \
            --users $KA_USERS --connections $KA_USERS --duration "${MAX_DUR}s" "$URL" || true
    done
done

# ---------------------------------------------------------------------------- phase 2
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
for rate in $CHURN_RATES; do
    for round in $(seq 1 "$ROUNDS"); do
        for tool in $(rotated "$round"); do
            run churn "$tool" "$round" "$rate" "$CHURN_DUR" loadgen -- \
                --no-keepalive --rate "$rate" --connections $CHURN_CONNS --duration "${CHURN_DUR}s" "$URL" || true
        done
    done
done
# loadgen opens about 8,000-9,000 connections/s on one core here; wrk with `Connection:
# close` (a reconnect per request, in C) goes further, to find where the analyzer loses.
if command -v wrk >/dev/null 2>&1 && [[ $WRK_CHURN == 1 ]]; then
    for round in $(seq 1 "$ROUNDS"); do
        for tool in $(rotated "$round"); do
            run churnmax "$tool" "$round" max "$CHURN_DUR" wrk -- \
                -t1 -c$WRK_CONNS -d"${CHURN_DUR}s" -H 'Connection: close' "$URL" || true
        done
    done
fi
sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
STATS_WAS=""

# ---------------------------------------------------------------------------- burst
# The analyzer's own ceiling, apart from what the load generator reaches: attach, stop
# the analyzer (SIGSTOP), churn with wrk for BURST_DUR s so that the 16 MiB ring buffer
# overflows, then SIGCONT it and time how much CPU it takes to drain the ring. Gives the
# ring's capacity in events, checks the "lost in kernel" count (recorded + lost should be
# the events of every connection), and the drain rate: events per CPU-second on a core
# of its own, the most it can keep up with.
burst_run() {
    local round=$1 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    tool_start analyzer || return 1
    local c0 c1 prev i t0 t1 rc=0
    c0=$(proc_cpu "$TOOL_PID")
    kill -STOP "$TOOL_PID"
    timeout -k 5 $((BURST_DUR + 60)) taskset -c $CLIENT_CPU \
        wrk -t1 -c$WRK_CONNS -d"${BURST_DUR}s" -H 'Connection: close' "$URL" >"$TMP/lg.json" 2>"$TMP/lg.err" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    t0=$(date +%s.%N)
    kill -CONT "$TOOL_PID"
    prev=-1
    for ((i = 0; i < 240; i++)); do # at most 60 s: CPU time unchanged over 0.25 s = drained
        sleep 0.25
        c1=$(proc_cpu "$TOOL_PID")
        [[ $c1 == "$prev" ]] && break
        prev=$c1
    done
    t1=$(date +%s.%N)
    tool_stop
    local events lost tnote conns
    read -r events lost tnote < <(tool_result analyzer)
    conns=$(grep -oE '^ *[0-9]+ requests in' "$TMP/lg.json" | grep -oE '[0-9]+' || echo 0)
    local dcpu dwall
    dcpu=$($PY -c "print(f'{($c1 - $c0) / $CLK_TCK:.2f}')")
    dwall=$($PY -c "print(f'{$t1 - $t0 - 0.25:.2f}')")
    printf '%s\n' "$DATE	burst	analyzer	$round	stopped	$BURST_DUR	$conns	0	0	0	$conns	0	0	$dcpu	$events	$lost	0	0	0	0	0	0	0	0	0	0	0	0	$dwall	$load	$rc	$tnote" >>"$TSV"
    log "$(printf 'burst     analyzer  r%s  %s connections while stopped: recorded %s, lost %s; drained in %s s wall, %s CPU-s' \
        "$round" "$conns" "$events" "$lost" "$dwall" "$dcpu")"
}
if command -v wrk >/dev/null 2>&1 && [[ $BURST == 1 ]]; then
    for round in $(seq 1 "$ROUNDS"); do
        burst_run "$round" || true
    done
fi

# ---------------------------------------------------------------------------- profile
TOP_RATE=$(tr ' ' '\n' <<<"$CHURN_RATES" | grep -E '^[0-9]+$' | sort -n | tail -1)
PERF_P=out/bench/perf-analyzer-$DATE.txt
PERF_A=out/bench/perf-analyzer-system-$DATE.txt
if [[ $PROFILE == 1 ]] && command -v perf >/dev/null 2>&1; then
    pdur=$((CHURN_DUR + 3))
    # perf report -F overhead,KEYS, without headers, blank lines and trailing blanks
    prep() {
        local keys=$1
        shift
        perf report -i "$TMP/perf.data" --no-children --stdio -g none -F "overhead,$keys" "$@" 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed 's/[[:space:]]*$//'
    }
    for mode in process system; do
        if ! tool_start analyzer; then break; fi
        log "perf record -g ($mode) during churn at $TOP_RATE/s for ${pdur}s"
        timeout -k 5 $((pdur + 60)) taskset -c $CLIENT_CPU "${LG[@]}" --no-keepalive --rate "$TOP_RATE" \
            --connections $CHURN_CONNS --duration "${pdur}s" "$URL" >/dev/null 2>&1 &
        CHILD=$!
        sleep 1
        if [[ $mode == process ]]; then
            perf record -q -g -p "$TOOL_PID" -o "$TMP/perf.data" -- sleep $((pdur - 2)) >/dev/null 2>"$TMP/perf.err" &
        else
            perf record -q -a -g -o "$TMP/perf.data" -- sleep $((pdur - 2)) >/dev/null 2>"$TMP/perf.err" &
        fi
        PERF_PIDS=($!)
        wait "${PERF_PIDS[0]}" || log "perf record: $(tail -2 "$TMP/perf.err")"
        PERF_PIDS=()
        wait "$CHILD" || true
        CHILD=""
        tool_stop
        if [[ $mode == process ]]; then
            { echo "# perf record -g -p <analyzer> during churn at $TOP_RATE new connections/s ($DATE)";
              echo "## by shared object"; prep dso;
              echo "## top symbols (self)"; prep dso,sym --percent-limit 0.7 | head -45; } >"$PERF_P" || true
        else
            { echo "# perf record -a -g during churn at $TOP_RATE new connections/s with the analyzer attached ($DATE)";
              echo "# (cpu-clock samples over both CPUs; other processes of the machine included)";
              echo "## by command"; prep comm | head -12;
              echo "## top symbols (self)"; prep comm,dso,sym --percent-limit 0.5 | head -45;
              echo "## BPF programs and ring buffer (self)"; prep sym | grep -E 'bpf_prog_|bpf_ringbuf|bpf_trace|perf_trace_|trace_event_raw' | head -20;
              echo "## who calls native_write_msr (an MSR write: a VM exit under a hypervisor)";
              perf report -i "$TMP/perf.data" --no-children --stdio -S native_write_msr -g caller,0.5,callee,function,percent \
                  2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]]*$//' | head -40; } >"$PERF_A" || true
        fi
        rm -f "$TMP/perf.data"
    done
fi

# ---------------------------------------------------------------------------- RSS
log "peak RSS run: analyzer attached, $RSS_RATE new connections/s for ${RSS_DUR}s"
run rss analyzer 1 "$RSS_RATE" "$RSS_DUR" loadgen -- \
    --no-keepalive --rate "$RSS_RATE" --connections $CHURN_CONNS --duration "${RSS_DUR}s" "$URL" || true

# ---------------------------------------------------------------------------- summary
{
    echo "Date $DATE; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?');"
    echo "analyzer + loadgen $REV; $(tcpdump --version 2>&1 | head -1); $(bpftrace --version 2>&1); nginx $(nginx -v 2>&1 | cut -d/ -f2)."
    echo "nginx: 1 worker on CPU $SERVER_CPU; loadgen on CPU $CLIENT_CPU; observers unpinned; $ROUNDS interleaved rounds, medians; raw rows: $TSV"
    echo
    $PY - "$TSV" "$TMP/bcc.txt" "$PERF_P" "$PERF_A" <<'EOF'
import csv, math, os, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
bcc = open(sys.argv[2]).read().splitlines() if os.path.exists(sys.argv[2]) else []
nan = float("nan")
def f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return nan
def med(rs, k):
    xs = [f(r[k]) for r in rs if not math.isnan(f(r[k]))]
    return st.median(xs) if xs else nan
def div(a, b):
    return a / b if b and not math.isnan(b) else nan
def maxlost(rs):
    return max(int(f(r["tool_lost"])) for r in rs)
def g(phase):
    out = {}
    for r in rows:
        if r["phase"] == phase:
            out.setdefault(r["target_rps"], {}).setdefault(r["tool"], []).append(r)
    return out
def busy(rs):
    return med(rs, "cpu0_busy_s") + med(rs, "cpu1_busy_s")
what = {"analyzer": "events", "tcpdump": "packets", "bpftrace": "lines", "tcplife-bcc": "lines", "raw": "packets",
        "raw-base": "packets"}
def per1k(rs):  # observer CPU-ms (user+sys of its process) per 1,000 recorded events/packets/lines
    return div(med(rs, "tool_cpu_s") * 1e6, med(rs, "tool_events"))
def per1kconn(rs):  # observer CPU-ms per 1,000 connections
    return div(med(rs, "tool_cpu_s") * 1e6, med(rs, "conns_opened"))

ka = g("keepalive").get("max", {})
if ka:
    base = med(ka.get("none", []), "req_s")
    print("Keep-alive, max rate (closed model, 50 users on 50 HTTP/1.1 connections):")
    print()
    print("| observer | runs | loadgen req/s | vs none | observer CPU-s | recorded | lost (max) | busy CPU-s, both CPUs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tool, rs in ka.items():
        q = med(rs, "req_s")
        rec = "-" if tool == "none" else f"{med(rs, 'tool_events'):,.0f} {what.get(tool, '')}"
        lost = "-" if tool == "none" else f"{maxlost(rs):,}"
        print(f"| {tool} | {len(rs)} | {q:,.0f} | {div(q, base):.3f} | {med(rs, 'tool_cpu_s'):.2f} | {rec} | {lost} "
              f"| {busy(rs):.2f} |")
    print()

def churn_table(ch, title):
    print(title)
    print()
    print("| target conn/s | observer | runs | achieved conn/s | vs none | late / skipped | observer CPU, % of a core "
          "| recorded /s | lost (max) | observer CPU-ms per 1k recorded | per 1k conns | added host CPU-ms per 1k conns "
          "| BPF ns per run (runs per conn) |")
    print("| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for target in sorted(ch, key=lambda t: int(t) if t.isdigit() else 10**9):
        tools = ch[target]
        none = tools.get("none", [])
        base = med(none, "conn_s")
        for tool, rs in tools.items():
            c = med(rs, "conn_s")
            w = med(rs, "window_s")
            if tool == "none":
                cols = ["-"] * 7
            else:
                ev = med(rs, "tool_events")
                conns = med(rs, "conns_opened")
                cpu = med(rs, "tool_cpu_s")
                runs = med(rs, "bpf_run_cnt")
                # host CPU (both CPUs busy) per connection, with minus without
                added = (div(busy(rs), conns) - div(busy(none), med(none, "conns_opened"))) * 1e6 if none else nan
                cols = [f"{div(cpu, w) * 100:.1f}", f"{div(ev, w):,.0f} {what.get(tool, '')}", f"{maxlost(rs):,}",
                        f"{per1k(rs):.2f}", f"{per1kconn(rs):.2f}", f"{added:.1f}",
                        f"{div(med(rs, 'bpf_run_ns'), runs):,.0f} ({div(runs, conns):.1f})" if runs else "-"]
            tl = f"{int(target):,}" if target.isdigit() else target
            print(f"| {tl} | {tool} | {len(rs)} | {c:,.0f} | {div(c, base):.3f} "
                  f"| {med(rs, 'late'):,.0f} / {med(rs, 'skipped'):,.0f} | " + " | ".join(cols) + " |")
    print()

ch = g("churn")
if ch:
    churn_table(ch, "Connection churn, loadgen `--no-keepalive` (one connection per request), open model:")
cm = g("churnmax")
if cm:
    churn_table(cm, "Connection churn at the most wrk reaches (`wrk -t1 -c50 -H 'Connection: close'`, a new connection per request):")

bu = [r for r in rows if r["phase"] == "burst"]
if bu:
    print("Burst: the analyzer stopped (SIGSTOP) while wrk churns for BURST_DUR s, then resumed; "
          "ring capacity, loss accounting, and drain rate:")
    print()
    print("| round | connections while stopped | events recorded (ring capacity) | lost in kernel | (recorded + lost) per connection "
          "| drain CPU-s | drain wall s | events per CPU-second |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in bu:
        e, l, c = f(r["tool_events"]), f(r["tool_lost"]), f(r["conns_opened"])
        print(f"| {r['round']} | {c:,.0f} | {e:,.0f} | {l:,.0f} | {div(e + l, c):.1f} | {f(r['tool_cpu_s']):.2f} "
              f"| {f(r['window_s']):.2f} | {div(e, f(r['tool_cpu_s'])):,.0f} |")
    print()

for r in (r for r in rows if r["phase"] == "rss"):
    print(f"Peak RSS: analyzer attached for {f(r['dur_s']):.0f} s at {int(r['target_rps']):,} new connections/s "
          f"({int(f(r['conns_opened'])):,} connections, {int(f(r['tool_events'])):,} events, lost {r['tool_lost']}): "
          f"VmHWM before SIGTERM {f(r['tool_hwm_kb']) / 1024:.1f} MiB (of which RssAnon {f(r['tool_rss_anon_kb']) / 1024:.1f} MiB, "
          f"BPF map mappings {f(r['tool_bpfmap_rss_kb']) / 1024:.1f} MiB), max RSS over its life including the report "
          f"{f(r['tool_maxrss_kb']) / 1024:.1f} MiB; CPU {f(r['tool_cpu_s']):.2f} s during the load, "
          f"{f(r['tool_total_cpu_s']):.2f} s in all.")
    print()

print("Ratios:")
print()
if ka and "none" in ka:
    base = med(ka["none"], "req_s")
    for tool in ka:
        if tool != "none":
            q = div(med(ka[tool], "req_s"), base)
            print(f"- keep-alive max rate, req/s with {tool} / without: {q:.3f} (cost {100 * (1 - q):.1f}%)")
for target in sorted(ch, key=int):
    tools = ch[target]
    if "analyzer" in tools and "none" in tools:
        a = tools["analyzer"]
        s = (f"- churn {int(target):,}/s: conn/s with analyzer / without "
             f"{div(med(a, 'conn_s'), med(tools['none'], 'conn_s')):.3f}")
        if "tcpdump" in tools:
            t = tools["tcpdump"]
            r1, r2 = div(per1k(a), per1k(t)), div(per1kconn(a), per1kconn(t))
            s += ("; analyzer / tcpdump CPU " + (f"per 1k events/packets {r1:.1f}, per connection {r2:.1f}"
                  if not math.isnan(r1) else "n/a (tcpdump's CPU under the clock tick)") + "; events per connection "
                  f"{div(med(a, 'tool_events'), med(a, 'conns_opened')):.1f}, packets per connection "
                  f"{div(med(t, 'tool_events'), med(t, 'conns_opened')):.1f}")
        print(s)
for tools in cm.values():
    if "analyzer" in tools and "none" in tools:
        a, t = tools["analyzer"], tools.get("tcpdump", [])
        s = (f"- churn at wrk's max: conn/s with analyzer / without {div(med(a, 'conn_s'), med(tools['none'], 'conn_s')):.3f}"
             f" ({med(a, 'conn_s'):,.0f} vs {med(tools['none'], 'conn_s'):,.0f}; analyzer recorded "
             f"{div(med(a, 'tool_events'), med(a, 'window_s')):,.0f} events/s, lost at most {maxlost(a):,})")
        if t:
            s += (f"; with tcpdump / without {div(med(t, 'conn_s'), med(tools['none'], 'conn_s')):.3f}; analyzer / tcpdump "
                  f"CPU per 1k events/packets {div(per1k(a), per1k(t)):.1f}")
        print(s)
for label, phase in (("churn", ch), ("churn at wrk's max", cm)):
    for target in sorted(phase, key=lambda t: int(t) if t.isdigit() else 10**9):
        tools = phase[target]
        for raw in ("raw", "raw-base"):
            if raw in tools and "tcpdump" in tools:
                r, t = tools[raw], tools["tcpdump"]
                at = f" {int(target):,}/s" if target.isdigit() else ""
                print(f"- {label}{at}: {raw} backend / tcpdump CPU per packet {div(per1k(r), per1k(t)):.2f} "
                      f"({per1k(r):.2f} vs {per1k(t):.2f} us per packet, {med(r, 'tool_events'):,.0f} vs "
                      f"{med(t, 'tool_events'):,.0f} packets; drops at most {maxlost(r):,} vs {maxlost(t):,})")
if ch:
    lossy = [t for t, tools in ch.items() if any(int(f(r["tool_lost"])) > 0 for r in tools.get("analyzer", []))]
    if lossy:
        t = min(lossy, key=int)
        a = ch[t]["analyzer"]
        print(f"- analyzer loss threshold: events lost from target {int(t):,} new connections/s on "
              f"(achieved {med(a, 'conn_s'):,.0f}/s, {div(med(a, 'tool_events'), med(a, 'window_s')):,.0f} events/s, "
              f"{sum(1 for r in a if int(f(r['tool_lost'])) > 0)} of {len(a)} runs lost, at most {maxlost(a):,})")
    else:
        top = max(ch, key=int)
        a = ch[top].get("analyzer", [])
        print(f"- analyzer loss threshold: no event lost at any rate, up to target {int(top):,}/s "
              f"(achieved {med(a, 'conn_s'):,.0f} new connections/s, "
              f"{div(med(a, 'tool_events'), med(a, 'window_s')):,.0f} events/s)")
if bu:
    rate = st.median([div(f(r["tool_events"]), f(r["tool_cpu_s"])) for r in bu])
    epc = st.median([div(f(r["tool_events"]) + f(r["tool_lost"]), f(r["conns_opened"])) for r in bu])
    print(f"- analyzer drain ceiling (burst, median): {rate:,.0f} events per CPU-second = {div(rate, epc):,.0f} new "
          f"connections/s on loopback ({epc:.1f} events per connection, both ends seen), about "
          f"{div(rate, epc / 2):,.0f}/s where only the client end is local; beyond it the ring fills and events are lost")
print()
for line in bcc:
    print(f"- {line}")
for p in sys.argv[3:5]:
    if os.path.exists(p):
        print(f"- profile: {p}")
EOF
} >"$MD"
log "raw rows: $TSV; tables: $MD"
cat "$MD"
