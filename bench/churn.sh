#!/usr/bin/env bash
# The analyzer under connection churn at the most this host can make, beside tcpdump.
#
#   bash bench/churn.sh              # from the repository root, as root
#
# HTTP generators stop near 8,000 new connections/s here (bench/analyzer.sh); the churn
# bench (tests/benches/churn.rs: blocking connect/accept/close threads, no HTTP) reaches
# 25-35k. Every loopback connection is two kernel sockets (client and server), both
# traced: 25k connections/s on loopback is the tracing load of 50k connections/s from a
# load host to a remote server.
#
# Observers: none, analyzer (eBPF backend), raw (the analyzer's raw-socket backend:
# AF_PACKET capture of the same traffic), tcpdump -w. Rounds are interleaved (rotated each
# round). Phases:
#   max     flat out (3 client threads) for DUR s
#   rate R  for each R in RATES: paced to R connections/s (8 client threads)
# Per run: connections/s reached, the observer's user+sys CPU over the churn window (from
# /proc/PID/stat), what it recorded and lost (analyzer: events and "lost in kernel", and
# run.lost_events in its report; raw: packets captured and PACKET_STATISTICS drops;
# tcpdump: packets captured and dropped by kernel), the
# analyzer's BPF program run time (fdinfo run_time_ns; kernel.bpf_stats_enabled=1 during
# the run, restored after). Rows: out/bench/churn-<date>.tsv; medians and ratios:
# out/bench/churn-<date>.md, printed at the end.
#
# Knobs: ROUNDS (3), DUR (5), RATES ("10000 20000"), PORT (18491), TOOLS ("none analyzer
# raw tcpdump"), SKIP_BUILD=1. To measure a change to the analyzer side by side in one
# run, build the analyzer of another commit (a worktree, its own target dir, after
# `cargo xtask build-ebpf --release` there) and pass it as BASE_ANALYZER=/path/to/analyzer
# with tool analyzer-base in TOOLS: TOOLS="none analyzer analyzer-base".
# Traffic: 127.0.0.1 only. Every run is under `timeout`; every wait is bounded; Ctrl-C
# stops what the script started and restores the sysctl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
RATES=${RATES:-"10000 20000"}
PORT=${PORT:-18491}
log() { printf '[churn] %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "run as root"; exit 1; }
command -v tcpdump >/dev/null || apt-get install -y -qq tcpdump >/dev/null

TMP=$(mktemp -d /tmp/faultline-churn.XXXXXX)
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
OBS=""
cleanup() {
    [[ -n $OBS ]] && kill -KILL "$OBS" 2>/dev/null || true
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo xtask build-ebpf --release >&2
    cargo build --release -p analyzer-user >&2
    cargo bench -p faultline-tests --bench churn --no-run >&2
fi
cp target/release/analyzer "$TMP/analyzer"
if [[ -n ${BASE_ANALYZER:-} ]]; then
    cp "$BASE_ANALYZER" "$TMP/analyzer-base"
fi
CHURN=$(ls -t target/release/deps/churn-* | grep -v '\.d$' | head -1)
cp "$CHURN" "$TMP/churn"
sysctl -qw kernel.bpf_stats_enabled=1

DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/churn-$DATE.tsv
MD=out/bench/churn-$DATE.md
printf 'phase\ttool\tround\tconn_s\tconns\tfailed\tchurn_cpu_s\ttool_cpu_s\tevents\tlost\tbpf_run_ns\tbpf_runs\n' >"$TSV"

jiffies() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
bpf_stats() {
    cat /proc/"$1"/fdinfo/* 2>/dev/null |
        awk '/^run_time_ns:/ { t += $2 } /^run_cnt:/ { c += $2 } END { print t + 0, c + 0 }'
}
TCK=$(getconf CLK_TCK)

# one PHASE TOOL ROUND CHURN-ARGS...: a churn run with TOOL attached; appends a row.
one() {
    local phase=$1 tool=$2 round=$3 i
    shift 3
    rm -f "$TMP"/obs.* "$TMP/x.pcap"
    OBS=""
    case $tool in
    analyzer | raw | analyzer-base)
        local backend=ebpf bin=$TMP/analyzer
        [[ $tool == raw ]] && backend=raw
        [[ $tool == analyzer-base ]] && bin=$TMP/analyzer-base
        [[ -x $bin ]] || { log "$tool: no binary (BASE_ANALYZER unset?)"; exit 1; }
        timeout 300 "$bin" attach --backend "$backend" --port "$PORT" --quiet \
            --out "$TMP/obs.json" >"$TMP/obs.out" 2>"$TMP/obs.err" &
        OBS=$!
        for ((i = 0; i < 300; i++)); do grep -q '^attached:' "$TMP/obs.err" && break; sleep 0.1; done
        ;;
    tcpdump)
        timeout 300 tcpdump -i lo -n -w "$TMP/x.pcap" "tcp port $PORT" >"$TMP/obs.out" 2>"$TMP/obs.err" &
        OBS=$!
        for ((i = 0; i < 300; i++)); do grep -q 'listening on' "$TMP/obs.err" && break; sleep 0.1; done
        ;;
    esac
    sleep 0.5
    local c0=0 b0="0 0" pid=""
    # $OBS is `timeout`; the observer is its child (timeout passes SIGTERM on to it).
    [[ -n $OBS ]] && pid=$(pgrep -P "$OBS" | head -1 || true)
    [[ -n $pid ]] && c0=$(jiffies "$pid") && b0=$(bpf_stats "$pid")
    timeout 120 "$TMP/churn" --port "$PORT" --seconds "$DUR" "$@" >"$TMP/churn.json"
    local c1=0 b1="0 0"
    [[ -n $pid ]] && c1=$(jiffies "$pid") && b1=$(bpf_stats "$pid")
    if [[ -n $OBS ]]; then
        kill -TERM "$OBS"
        for ((i = 0; i < 600; i++)); do kill -0 "$OBS" 2>/dev/null || break; sleep 0.1; done
        wait "$OBS" 2>/dev/null || true
    fi
    OBS=""
    python3 - "$phase" "$tool" "$round" "$TMP" "$((c1 - c0))" "$TCK" "$b0" "$b1" >>"$TSV" <<'EOF'
import json, os, re, sys
phase, tool, rnd, tmp, jif, tck, b0, b1 = sys.argv[1:9]
c = json.load(open(os.path.join(tmp, "churn.json")))
err = open(os.path.join(tmp, "obs.err"), errors="replace").read() if tool != "none" else ""
events = lost = -1
if tool == "raw":
    m = re.search(r"^capture: (\d+) packets on \S+, (\d+) dropped", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(2))
elif tool in ("analyzer", "analyzer-base"):
    m = re.search(r"^events: (\d+) .*?; lost in kernel: (\d+)", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(2))
    rl = json.load(open(os.path.join(tmp, "obs.json")))["run"]["lost_events"]
    lost = max(lost, rl)
elif tool == "tcpdump":
    m = re.search(r"(\d+) packets captured", err)
    d = re.search(r"(\d+) packets dropped by kernel", err)
    events = int(m.group(1)) if m else -1
    lost = int(d.group(1)) if d else -1
t0, n0 = map(int, b0.split()); t1, n1 = map(int, b1.split())
print("\t".join(map(str, [phase, tool, rnd, round(c["conn_per_sec"]), c["connections"], c["failed"],
    round(c["cpu_seconds"], 2), round(int(jif) / int(tck), 2), events, lost, t1 - t0, n1 - n0])))
EOF
    tail -1 "$TSV" >&2
}

read -r -a TOOLS <<<"${TOOLS:-none analyzer raw tcpdump}"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
        t=${TOOLS[$(((k + r) % ${#TOOLS[@]}))]}
        one max "$t" "$r" --clients 3
        for rate in $RATES; do one "rate$rate" "$t" "$r" --clients 8 --rate "$rate"; done
    done
done

python3 - "$TSV" "$DUR" >"$MD" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
dur = float(sys.argv[2])
med = lambda xs: st.median(xs) if xs else float("nan")
print("| phase | tool | new conn/s (median) | vs none | observer CPU-s per s of churn | events or packets/s | lost (max) | BPF ns per program run |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for phase in dict.fromkeys(r["phase"] for r in rows):
    base = med([float(r["conn_s"]) for r in rows if r["phase"] == phase and r["tool"] == "none"])
    for tool in ("none", "analyzer", "analyzer-base", "raw", "tcpdump"):
        rs = [r for r in rows if r["phase"] == phase and r["tool"] == tool]
        if not rs:
            continue
        cs = med([float(r["conn_s"]) for r in rs])
        cpu = med([float(r["tool_cpu_s"]) / dur for r in rs])
        ev = med([float(r["events"]) / dur for r in rs])
        lost = max(int(r["lost"]) for r in rs)
        runs = [(int(r["bpf_run_ns"]), int(r["bpf_runs"])) for r in rs if int(r["bpf_runs"]) > 0]
        ns = f"{med([t / n for t, n in runs]):.0f}" if runs else "-"
        evs = "-" if tool == "none" else f"{ev:,.0f}"
        lst = "-" if tool == "none" else str(lost)
        cpus = "-" if tool == "none" else f"{cpu:.2f}"
        print(f"| {phase} | {tool} | {cs:,.0f} | {cs / base:.2f} | {cpus} | {evs} | {lst} | {ns} |")
EOF
cat "$MD"
log "rows: $TSV  tables: $MD"
