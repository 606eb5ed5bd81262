#!/usr/bin/env bash
# What the analyzer's plaintext capture (issue 12) costs the clients it watches, and the
# processes it does not watch.
#
#   bash bench/plaintext.sh          # from the repository root, as root
#
# The eBPF backend attaches sys_enter/sys_exit of write, sendto, writev, sendmsg, read,
# recvfrom, readv and recvmsg (analyzer-ebpf/src/probes/syscalls.rs). For a process that
# connected a recorded socket it copies the first 4 KiB of every call on such a socket to
# the ring buffer; every other read/write on the host pays one hash lookup of the caller
# at entry and one at exit. `--no-plaintext` leaves those programs unattached (TCP
# tracepoints only). So the cost lands on (a) the watched client's every read/write,
# (b) every other process's read/write system calls, (c) the analyzer's own CPU.
#
# Server: our own nginx (config, pid file and logs in a temp dir; a foreground child),
# one worker pinned to CPU 0, access log off, `return 200 "ok"`, on 127.0.0.1:
#   PORT     HTTP/1.1            recorded (--port)
#   PORT+1   h2c, prior knowledge (nginx 1.22 `listen ... http2` without ssl)   recorded
#   PORT+2   HTTP/1.1            NOT recorded: the load of processes the analyzer ignores
# Clients, each pinned to CPU 1:
#   wrk        wrk -t1 -c50 -d DUR s, HTTP/1.1 keep-alive, to PORT: req/s
#   h2load     h2load -c10 -m10 -D DUR, h2c, to PORT+1: req/s
#   curl       a loop of `curl -s -o /dev/null` for DUR s (a new process and connection
#              per request), to PORT: requests done (/DUR = req/s)
#   go         tests/go/client (Go net/http, stdlib only, built stripped as in
#              tests/src/foreign/gobuild.rs): GO_REQUESTS requests from GO_CONC workers,
#              HTTP/1.1 keep-alive, to PORT: ok / wall time
#   unwatched  the wrk run, to PORT+2: the cost for processes the analyzer does not watch
# Observers: none; nopt (`analyzer attach --no-plaintext`); pt (plaintext on). The
# analyzer is `analyzer attach --port PORT,PORT+1 --backend ebpf --quiet --format json
# --out FILE`, not pinned, stopped with SIGTERM. Rounds are interleaved: each round runs
# every client (order rotated) under every observer (order rotated), so the three runs of
# a client are next to each other in time on a shared machine.
#
# Per run: the client's req/s; the client's own user+sys CPU (bash `times` around it,
# children included: the curl processes, the BPF programs run in its system calls) and
# the nginx worker's (/proc/PID/stat), per request, the measure that holds up best on a
# shared machine; the analyzer's user+sys CPU over the load window (/proc/PID/stat just
# before and after the client); events and lost events (its final stderr line, and
# run.lost_events in its report); run.plaintext.calls, bytes and bytes_captured; the BPF
# run time of its programs (kernel.bpf_stats_enabled=1 during the run, restored after;
# fdinfo run_time_ns/run_cnt per prog_id, named through `bpftool prog show`), split into
# the syscall programs (names starting sys_enter_/sys_exit_) and the rest. The syscall
# programs run for every read/write on the host, other builds included: their run count
# is host-wide. Also the runs of the syscall programs that other analyzers on the host
# (other sessions' tests) had attached during the window, from `bpftool prog show` before
# and after: they tax every run, "none" included. Rows: out/bench/plaintext-<date>.tsv;
# medians and ratios: out/bench/plaintext-<date>.md, printed at the end. A ratio "vs
# none" is the median over rounds of (this run / the run without observer of the same
# round).
#
# Knobs: ROUNDS (3), DUR (5), PORT (18591; uses PORT..PORT+2), CLIENTS ("wrk h2load curl
# go unwatched"), OBSERVERS ("none nopt pt"), GO_REQUESTS (50000), GO_CONC (50),
# SKIP_BUILD=1 (use target/release/analyzer as it is), ANALYZER=/path (measure that
# binary instead, e.g. one built from a clean export of a commit; implies SKIP_BUILD) with
# ANALYZER_REV (its label in the table), SUMMARY=out/bench/plaintext-<date>.tsv (only
# print the tables of an earlier run).
# Installs wrk, h2load (nghttp2-client), bpftool, nginx-light and golang-go when missing.
# Traffic: 127.0.0.1 only. Every run is under `timeout`; every wait and loop is bounded;
# Ctrl-C or any exit stops what the script started, restores the sysctl and removes the
# temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
PORT=${PORT:-18591}
GO_REQUESTS=${GO_REQUESTS:-50000}
GO_CONC=${GO_CONC:-50}
SERVER_CPU=0
CLIENT_CPU=1
P_H1=$PORT P_H2C=$((PORT + 1)) P_OTHER=$((PORT + 2))
read -r -a CLIENTS <<<"${CLIENTS:-wrk h2load curl go unwatched}"
read -r -a OBSERVERS <<<"${OBSERVERS:-none nopt pt}"
log() { printf '[plaintext] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# summary TSV LABEL: the Markdown table of a run's rows, on stdout.
summary() {
    python3 - "$1" "$2" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: st.median(xs) if xs else float("nan")
f = lambda r, k: float(r[k])
label = {"none": "none", "nopt": "analyzer --no-plaintext", "pt": "analyzer (plaintext)"}
per_req = lambda r, k: f(r, k) / f(r, "requests") * 1e6 if f(r, k) >= 0 and f(r, "requests") > 0 else float("nan")
print(f"analyzer {sys.argv[2]}, {sys.argv[1]}; medians of {len({r['round'] for r in rows})} rounds; "
      "vs none: median over rounds of the ratio to the same round's run without observer\n")
print("| client | observer | req/s | vs none | client CPU us/req | vs none | nginx CPU us/req "
      "| analyzer CPU, share of a core | TCP events/s | lost (max) | plaintext calls "
      "| bytes captured / moved | BPF ns per run: syscall programs (runs/s) | the rest (runs/s) "
      "| syscall programs, us per request | other sessions' syscall programs, runs/s |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for cl in dict.fromkeys(r["client"] for r in rows):
    base = {r["round"]: r for r in rows if r["client"] == cl and r["observer"] == "none"}
    def ratio(rs, key):
        xs = [key(r) / key(base[r["round"]]) for r in rs if r["round"] in base]
        return f"{med(xs):.3f}" if xs else "-"
    for ob in ("none", "nopt", "pt"):
        rs = [r for r in rows if r["client"] == cl and r["observer"] == ob]
        if not rs:
            continue
        ccpu = lambda r: per_req(r, "client_cpu_s")
        cells = [cl, label[ob], f"{med([f(r, 'req_s') for r in rs]):,.0f}", ratio(rs, lambda r: f(r, "req_s")),
                 f"{med([ccpu(r) for r in rs]):.1f}", ratio(rs, ccpu),
                 f"{med([per_req(r, 'nginx_cpu_s') for r in rs]):.1f}"]
        foreign = f"{med([f(r, 'foreign_sys_bpf_runs') / f(r, 'window_s') for r in rs]):,.0f}"
        if ob == "none":
            cells += ["-"] * 8 + [foreign]
        else:
            win = lambda r: f(r, "window_s")
            cells.append(f"{med([f(r, 'analyzer_cpu_s') / win(r) for r in rs]):.2f}")
            cells.append(f"{med([f(r, 'events') / win(r) for r in rs]):,.0f}")
            cells.append(str(max(int(r["lost"]) for r in rs)))
            cells.append(f"{med([f(r, 'pt_calls') for r in rs]):,.0f}")
            cells.append(f"{med([f(r, 'pt_bytes_captured') for r in rs]):,.0f} / {med([f(r, 'pt_bytes') for r in rs]):,.0f}")
            for k in ("sys", "other"):
                runs = [(int(r[f"{k}_bpf_ns"]), int(r[f"{k}_bpf_runs"]), win(r)) for r in rs if int(r[f"{k}_bpf_runs"]) > 0]
                cells.append(f"{med([t / n for t, n, _ in runs]):,.0f} ({med([n / w for _, n, w in runs]):,.0f})" if runs else "- (0)")
            sysr = [per_req(r, "sys_bpf_ns") / 1e9 for r in rs if int(r["sys_bpf_runs"]) > 0]
            cells.append(f"{med(sysr):.2f}" if sysr else "-")
            cells.append(foreign)
        print("| " + " | ".join(cells) + " |")
EOF
}
if [[ -n ${SUMMARY:-} ]]; then
    summary "$SUMMARY" "${ANALYZER_REV:-?}"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "run as root"
for pair in wrk:wrk h2load:nghttp2-client bpftool:bpftool nginx:nginx-light go:golang-go \
    curl:curl taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null || timeout 600 apt-get install -y -qq "${pair#*:}" >/dev/null
done
for p in $P_H1 $P_H2C $P_OTHER; do
    [[ -z $(ss -Hltn "sport = :$p") ]] || die "port $p is in use: set PORT"
done

TMP=$(mktemp -d /tmp/faultline-plaintext.XXXXXX)
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
OBS=""
CHILD=""
NGINX_PID=""
# stop PID: SIGTERM to a `timeout` we started, which passes it on to its process group
# (the client, or the analyzer, which then detaches); SIGKILL after 5 s.
stop() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in {1..50}; do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    pkill -KILL -P "$1" 2>/dev/null || true
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    [[ -n $CHILD ]] && stop "$CHILD"
    [[ -n $OBS ]] && stop "$OBS"
    if [[ -n $NGINX_PID ]]; then
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------- binaries
if [[ -n ${ANALYZER:-} ]]; then
    [[ -x $ANALYZER ]] || die "ANALYZER=$ANALYZER is not an executable"
    cp "$ANALYZER" "$TMP/analyzer"
    REV=${ANALYZER_REV:-$ANALYZER}
else
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        cargo xtask build-ebpf --release >&2
        cargo build --release -p analyzer-user >&2
    fi
    # A copy: a rebuild during the run cannot swap the binary under it.
    cp target/release/analyzer "$TMP/analyzer"
    REV=$(git rev-parse --short HEAD)
    [[ -z $(git status --porcelain -- analyzer-common analyzer-ebpf analyzer-user) ]] || REV="$REV+dirty"
fi
log "building tests/go/client (stripped, offline, caches in $TMP)"
(cd tests/go && GOCACHE=$TMP/go/cache GOPATH=$TMP/go/path GOTOOLCHAIN=local GOPROXY=off \
    GOFLAGS= GOENV=off GOWORK=off GO111MODULE=on CGO_ENABLED=0 \
    timeout 600 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$TMP/goclient" ./client)

# ---------------------------------------------------------------------------- nginx
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    # No connection is closed by the server during a run (default: after 1000 requests).
    keepalive_requests 1000000000;
    server {
        listen 127.0.0.1:$P_H1;
        listen 127.0.0.1:$P_H2C http2;
        listen 127.0.0.1:$P_OTHER;
        location / { return 200 "ok"; }
    }
}
EOF
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" -t -q
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for ((i = 0; i < 50; i++)); do
    [[ -s $TMP/nginx.pid && -n $(ss -Hltn "sport = :$P_OTHER") ]] && break
    sleep 0.1
done
[[ -s $TMP/nginx.pid ]] || die "nginx did not start: $(cat "$TMP/nginx/error.log")"
curl -sf -o /dev/null "http://127.0.0.1:$P_H1/" || die "nginx does not answer on $P_H1"
curl -sf -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$P_H2C/" || die "no h2c on $P_H2C"
NGINX_WORKER=""
for ((i = 0; i < 50; i++)); do
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
    [[ -n $NGINX_WORKER ]] && break
    sleep 0.1
done
[[ -n $NGINX_WORKER ]] || die "no nginx worker"
log "nginx $NGINX_PID (worker $NGINX_WORKER) on CPU $SERVER_CPU: :$P_H1 HTTP/1.1, :$P_H2C h2c (both recorded), :$P_OTHER HTTP/1.1 (not)"

sysctl -qw kernel.bpf_stats_enabled=1
DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/plaintext-$DATE.tsv
MD=out/bench/plaintext-$DATE.md
printf 'client\tobserver\tround\treq_s\trequests\tfailed\twindow_s\tclient_cpu_s\tnginx_cpu_s\tanalyzer_cpu_s\tevents\tlost\tpt_calls\tpt_bytes\tpt_bytes_captured\tsys_bpf_ns\tsys_bpf_runs\tother_bpf_ns\tother_bpf_runs\tforeign_sys_bpf_ns\tforeign_sys_bpf_runs\tloadavg1\n' >"$TSV"

jiffies() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# prog_id run_time_ns run_cnt, one line per BPF program the process holds.
bpf_progs() {
    for f in /proc/"$1"/fdinfo/*; do
        awk '/^prog_id:/ { id = $2 } /^run_time_ns:/ { t = $2 } /^run_cnt:/ { c = $2 }
             END { if (id != "" && t != "") print id, t, c + 0 }' "$f" 2>/dev/null || true
    done | sort -u -k1,1n
}
TCK=$(getconf CLK_TCK)
now() { echo "$EPOCHREALTIME"; }

# pinned SECONDS CMD...: CMD in the background, pinned to CLIENT_CPU, under `timeout`;
# its output in $TMP/client.out, its user+sys CPU and its children's (bash `times`) in
# $TMP/client.times.
pinned() {
    local t=$1
    shift
    rm -f "$TMP/client.times"
    timeout "$t" taskset -c $CLIENT_CPU bash -c '"$@"; rc=$?; times >"$0"; exit $rc' \
        "$TMP/client.times" "$@" >"$TMP/client.out" 2>&1 &
    CHILD=$!
}

# client NAME: runs client NAME; writes "req_s requests failed wall_s cpu_s" to
# $TMP/client.res.
client() {
    local t0 t1
    case $1 in
    wrk | unwatched)
        local port=$P_H1
        [[ $1 == unwatched ]] && port=$P_OTHER
        pinned $((DUR + 30)) wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$port/"
        ;;
    h2load)
        pinned $((DUR + 30)) h2load -c10 -m10 -D "$DUR" "http://127.0.0.1:$P_H2C/"
        ;;
    curl)
        # Bounded twice: by DUR s of wall time and by 1,000,000 iterations.
        pinned $((DUR + 30)) bash -c '
            end=$(( ${EPOCHREALTIME/./} + $1 * 1000000 ))
            for ((i = 0; i < 1000000; i++)); do
                (( ${EPOCHREALTIME/./} < end )) || break
                curl -s -o /dev/null -w "%{http_code}\n" "http://127.0.0.1:$2/" || true
            done' _ "$DUR" "$P_H1"
        ;;
    go)
        pinned $((DUR * 10 + 60)) "$TMP/goclient" -url="http://127.0.0.1:$P_H1/" \
            -n="$GO_REQUESTS" -c="$GO_CONC" -timeout=10s
        ;;
    *) die "unknown client $1" ;;
    esac
    t0=$(now)
    wait "$CHILD" || log "$1 exited with $?"
    t1=$(now)
    CHILD=""
    python3 - "$1" "$TMP/client.out" "$t0" "$t1" "$TMP/client.times" >"$TMP/client.res" <<'EOF'
import json, os, re, sys
name, path, t0, t1, times = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
text = open(path, errors="replace").read()
# `times`: the shell's user and system time, then its children's, as XmY.YYYs.
ts = re.findall(r"(\d+)m([\d.]+)s", open(times).read()) if os.path.exists(times) else []
cpu = sum(int(m) * 60 + float(x) for m, x in ts) if len(ts) == 4 else -1
wall = t1 - t0
if name in ("wrk", "unwatched"):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    n = int(re.search(r"(\d+) requests in", text).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    bad = sum(map(int, m.groups())) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad += int(m.group(1)) if m else 0
elif name == "h2load":
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    n, bad = int(m.group(4)), int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text).group(1))
elif name == "curl":
    lines = text.split()
    n = sum(1 for l in lines if l == "200")
    bad = len(lines) - n
    rps = n / wall
elif name == "go":
    d = json.loads(text.strip().splitlines()[-1])
    n, bad = d["ok"], d["requests"] - d["ok"]
    rps = n / wall
print(f"{rps:.1f} {n} {bad} {wall:.3f} {cpu:.3f}")
EOF
}

# one CLIENT OBSERVER ROUND: a client run beside OBSERVER; appends a row.
one() {
    local cl=$1 ob=$2 round=$3 i pid="" c0=0 c1=0 n0 n1
    rm -f "$TMP"/obs.* "$TMP"/progs.* "$TMP"/bpftool.*
    OBS=""
    if [[ $ob != none ]]; then
        local args=(attach --port "$P_H1,$P_H2C" --backend ebpf --quiet --format json --out "$TMP/obs.json")
        [[ $ob == nopt ]] && args+=(--no-plaintext)
        timeout 600 "$TMP/analyzer" "${args[@]}" >/dev/null 2>"$TMP/obs.err" &
        OBS=$!
        for ((i = 0; i < 300; i++)); do
            grep -qs '^attached:' "$TMP/obs.err" && break
            kill -0 "$OBS" 2>/dev/null || die "analyzer exited: $(cat "$TMP/obs.err")"
            sleep 0.1
        done
        grep -q '^attached:' "$TMP/obs.err" || die "analyzer not attached after 30 s: $(cat "$TMP/obs.err")"
        if grep -q '^missing:' "$TMP/obs.err"; then log "$ob: $(grep '^missing:' "$TMP/obs.err" | tr '\n' ' ')"; fi
        # $OBS is `timeout`; the analyzer is its child (timeout passes SIGTERM on to it).
        pid=$(pgrep -P "$OBS" | head -1 || true)
        [[ -n $pid ]] || die "no analyzer process under timeout $OBS"
    fi
    sleep 0.5
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    # Every program on the host, other sessions' analyzers included: their syscall
    # programs tax this run's system calls too, whatever the observer.
    timeout 30 bpftool -j prog show >"$TMP/bpftool.0"
    if [[ -n $pid ]]; then c0=$(jiffies "$pid"); bpf_progs "$pid" >"$TMP/progs.0"; fi
    n0=$(jiffies "$NGINX_WORKER")
    client "$cl"
    n1=$(jiffies "$NGINX_WORKER")
    if [[ -n $pid ]]; then c1=$(jiffies "$pid"); bpf_progs "$pid" >"$TMP/progs.1"; fi
    timeout 30 bpftool -j prog show >"$TMP/bpftool.1"
    if [[ -n $OBS ]]; then
        kill -TERM "$OBS"
        for ((i = 0; i < 600; i++)); do kill -0 "$OBS" 2>/dev/null || break; sleep 0.1; done
        wait "$OBS" 2>/dev/null || true
    fi
    OBS=""
    python3 - "$cl" "$ob" "$round" "$TMP" "$((c1 - c0))" "$TCK" "$load" "$((n1 - n0))" >>"$TSV" <<'EOF'
import json, os, re, sys
cl, ob, rnd, tmp, jif, tck, load, njif = sys.argv[1:9]
rps, n, bad, wall, ccpu = open(os.path.join(tmp, "client.res")).read().split()
events = lost = calls = pbytes = pcapt = -1
sys_ns = sys_runs = oth_ns = oth_runs = 0
is_sys = lambda name: name.startswith(("sys_enter_", "sys_exit_"))
host = [{p["id"]: p for p in json.load(open(os.path.join(tmp, f"bpftool.{i}")))} for i in (0, 1)]
ours = set()
if ob != "none":
    err = open(os.path.join(tmp, "obs.err"), errors="replace").read()
    m = re.search(r"^events: (\d+) .*?; lost in kernel: (\d+)", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(2))
    run = json.load(open(os.path.join(tmp, "obs.json")))["run"]
    lost = max(lost, run["lost_events"])
    pt = run.get("plaintext") or {}
    calls, pbytes, pcapt = pt.get("calls", 0), pt.get("bytes", 0), pt.get("bytes_captured", 0)
    names = {i: p.get("name", "") for i, p in host[1].items()}
    def progs(path):
        return {int(i): (int(t), int(c)) for i, t, c in (l.split() for l in open(path) if l.strip())}
    p0, p1 = progs(os.path.join(tmp, "progs.0")), progs(os.path.join(tmp, "progs.1"))
    ours = set(p1)
    for pid_, (t1, c1) in p1.items():
        t0, c0 = p0.get(pid_, (0, 0))
        if is_sys(names.get(pid_, "")):
            sys_ns += t1 - t0; sys_runs += c1 - c0
        else:
            oth_ns += t1 - t0; oth_runs += c1 - c0
# Syscall programs of other sessions' analyzers that ran during the window.
f_ns = f_runs = 0
for i, p in host[1].items():
    if i in ours or not is_sys(p.get("name", "")) or i not in host[0]:
        continue
    f_ns += p.get("run_time_ns", 0) - host[0][i].get("run_time_ns", 0)
    f_runs += p.get("run_cnt", 0) - host[0][i].get("run_cnt", 0)
print("\t".join(map(str, [cl, ob, rnd, rps, n, bad, wall, ccpu, round(int(njif) / int(tck), 2),
    round(int(jif) / int(tck), 2), events, lost,
    calls, pbytes, pcapt, sys_ns, sys_runs, oth_ns, oth_runs, f_ns, f_runs, load])))
EOF
    tail -1 "$TSV" >&2
}

log "analyzer $REV; ${#CLIENTS[@]} clients x ${#OBSERVERS[@]} observers x $ROUNDS rounds, DUR=${DUR}s"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#CLIENTS[@]}; k++)); do
        c=${CLIENTS[$(((k + r) % ${#CLIENTS[@]}))]}
        for ((o = 0; o < ${#OBSERVERS[@]}; o++)); do
            one "$c" "${OBSERVERS[$(((o + r + k) % ${#OBSERVERS[@]}))]}" "$r"
        done
    done
done

summary "$TSV" "$REV" >"$MD"
cat "$MD"
log "rows: $TSV  table: $MD"
