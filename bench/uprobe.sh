#!/usr/bin/env bash
# What the analyzer's TLS uprobes (issue 12) cost the clients it watches, per TLS call.
#
#   bash bench/uprobe.sh          # from the repository root, as root
#
# The eBPF backend attaches uprobes to SSL_write, SSL_read, SSL_write_ex and SSL_read_ex
# of the system's libssl.so.3, and uretprobes to their returns (analyzer-ebpf/src/
# probes/tls.rs): on the library's file, so every process that maps it traps into the
# kernel at every call, the server beside the client included. For a Go binary named by
# `--tls-exe` it attaches one uprobe at the entry of crypto/tls.(*Conn).Write and Read
# and one at every RET instruction of both. A uprobe is an int3 in the process's text:
# each hit is a trap, the BPF program, and a single-step or emulation of the displaced
# instruction; a uretprobe also swaps the return address (a second trap at the return).
# The kernel's run_time_ns counts only the BPF program, so the honest figure is the
# client's own CPU per request with and without the analyzer.
#
# Server: our own nginx (config, self-signed EC certificate, pid file and logs in a temp
# dir; a foreground child), one worker pinned to CPU 0, access log off, `return 200
# "ok"`, TLS 1.3 + HTTP/2 (`listen 127.0.0.1:PORT ssl http2`). nginx links libssl.so.3:
# it pays the libssl uprobes too (its CPU per request is in the table).
# Clients, each pinned to CPU 1:
#   h2load   h2load -n H2_REQUESTS -c H2_CONC -m H2_STREAMS https://127.0.0.1:PORT/
#            (nghttp2's tool, OpenSSL through the system libssl.so.3): req/s
#   go       tests/go/client (Go net/http + crypto/tls, stdlib only, built stripped
#            `-ldflags '-s -w'` as in tests/src/foreign/gobuild.rs), -h2 -insecure:
#            GO_REQUESTS requests from GO_CONC workers over HTTP/2: ok / wall time
# Observers: none; nopt (`analyzer attach --no-plaintext`: TCP tracepoints only, no
# uprobes, no syscall capture); pt (full capture: syscall tracepoints, the libssl
# uprobes, and for the Go client `--tls-exe` that binary). The analyzer is `analyzer
# attach --port PORT --backend ebpf --quiet --format json --out FILE`, not pinned,
# stopped with SIGTERM. Rounds are interleaved: each round runs every client (order
# rotated) under every observer (order rotated), so the three runs of a client are next
# to each other in time on a shared machine.
#
# Per run: the client's req/s; the client's user+sys CPU (bash `times` around it) and
# the nginx worker's (/proc/PID/stat), per request; the analyzer's CPU over the load
# window; events and lost events (its final stderr line and run.lost_events);
# run.plaintext calls and bytes; the BPF run time and run count of its programs
# (kernel.bpf_stats_enabled=1 during the run, restored after; fdinfo per prog_id, named
# through `bpftool prog show`), split into the libssl programs (ssl_*), the Go ones
# (go_tls_*), the syscall ones (sys_enter_*/sys_exit_*) and the rest. The libssl
# programs run for every libssl call on the host (nginx's, other sessions' curl): their
# count is host-wide. Rows: out/bench/uprobe-<date>.tsv; medians and ratios:
# out/bench/uprobe-<date>.md, printed at the end. "vs none" is the median over rounds of
# (this run / the same round's run without observer).
#
# Knobs: ROUNDS (3), PORT (18611), CLIENTS ("h2load go"), OBSERVERS ("none nopt pt"),
# H2_REQUESTS (40000), H2_CONC (10), H2_STREAMS (10), GO_REQUESTS (20000), GO_CONC (20),
# SKIP_BUILD=1 (use target/release/analyzer as it is), ANALYZER=/path (measure that
# binary instead; implies SKIP_BUILD) with ANALYZER_REV, SUMMARY=out/bench/uprobe-<date>.tsv
# (only print the tables of an earlier run).
# Installs h2load (nghttp2-client), bpftool, nginx-light and golang-go when missing.
# Traffic: 127.0.0.1 only. Every run is under `timeout`; every wait and loop is bounded;
# Ctrl-C or any exit stops what the script started, restores the sysctl and removes the
# temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18611}
H2_REQUESTS=${H2_REQUESTS:-40000}
H2_CONC=${H2_CONC:-10}
H2_STREAMS=${H2_STREAMS:-10}
GO_REQUESTS=${GO_REQUESTS:-20000}
GO_CONC=${GO_CONC:-20}
SERVER_CPU=0
CLIENT_CPU=1
read -r -a CLIENTS <<<"${CLIENTS:-h2load go}"
read -r -a OBSERVERS <<<"${OBSERVERS:-none nopt pt}"
log() { printf '[uprobe] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# summary TSV LABEL: the Markdown table of a run's rows, on stdout.
summary() {
    python3 - "$1" "$2" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: st.median(xs) if xs else float("nan")
f = lambda r, k: float(r[k])
label = {"none": "none", "nopt": "--no-plaintext", "pt": "full capture"}
per_req = lambda r, k: f(r, k) / f(r, "requests") * 1e6 if f(r, k) >= 0 and f(r, "requests") > 0 else float("nan")
print(f"analyzer {sys.argv[2]}, {sys.argv[1]}; medians of {len({r['round'] for r in rows})} rounds; "
      "vs none: median over rounds of the ratio to the same round's run without observer\n")
print("| client | observer | req/s | vs none | client CPU us/req | vs none | nginx CPU us/req | vs none "
      "| analyzer CPU, share of a core | lost (max) | plaintext calls / request "
      "| BPF ns per run (runs per request): libssl programs | Go programs | syscall programs | the rest |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
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
        ncpu = lambda r: per_req(r, "nginx_cpu_s")
        cells = [cl, label[ob], f"{med([f(r, 'req_s') for r in rs]):,.0f}", ratio(rs, lambda r: f(r, "req_s")),
                 f"{med([ccpu(r) for r in rs]):.1f}", ratio(rs, ccpu),
                 f"{med([ncpu(r) for r in rs]):.1f}", ratio(rs, ncpu)]
        if ob == "none":
            cells += ["-"] * 7
        else:
            cells.append(f"{med([f(r, 'analyzer_cpu_s') / f(r, 'window_s') for r in rs]):.2f}")
            cells.append(str(max(int(r["lost"]) for r in rs)))
            cells.append(f"{med([f(r, 'pt_calls') / f(r, 'requests') for r in rs]):.2f}")
            for k in ("ssl", "go", "sys", "other"):
                runs = [(int(r[f"{k}_bpf_ns"]), int(r[f"{k}_bpf_runs"]), f(r, "requests")) for r in rs
                        if int(r[f"{k}_bpf_runs"]) > 0]
                cells.append(f"{med([t / n for t, n, _ in runs]):,.0f} ({med([n / q for _, n, q in runs]):.2f})"
                             if runs else "- (0)")
        print("| " + " | ".join(cells) + " |")
EOF
}
if [[ -n ${SUMMARY:-} ]]; then
    summary "$SUMMARY" "${ANALYZER_REV:-?}"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "run as root"
for pair in h2load:nghttp2-client bpftool:bpftool nginx:nginx-light go:golang-go \
    openssl:openssl taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null || timeout 600 apt-get install -y -qq "${pair#*:}" >/dev/null
done
[[ -z $(ss -Hltn "sport = :$PORT") ]] || die "port $PORT is in use: set PORT"

TMP=$(mktemp -d /tmp/faultline-uprobe.XXXXXX)
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
OBS=""
CHILD=""
NGINX_PID=""
# stop PID: SIGTERM to a `timeout` we started, which passes it on to its process group;
# SIGKILL after 5 s.
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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
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
    http2_max_concurrent_streams 128;
    server {
        listen 127.0.0.1:$PORT ssl http2;
        ssl_protocols TLSv1.3;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        location / { return 200 "ok"; }
    }
}
EOF
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" -t -q
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for ((i = 0; i < 50; i++)); do
    [[ -s $TMP/nginx.pid && -n $(ss -Hltn "sport = :$PORT") ]] && break
    sleep 0.1
done
[[ -s $TMP/nginx.pid ]] || die "nginx did not start: $(cat "$TMP/nginx/error.log")"
curl -sfk -o /dev/null --http2 "https://127.0.0.1:$PORT/" || die "nginx does not answer on $PORT"
NGINX_WORKER=""
for ((i = 0; i < 50; i++)); do
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
    [[ -n $NGINX_WORKER ]] && break
    sleep 0.1
done
[[ -n $NGINX_WORKER ]] || die "no nginx worker"
log "nginx $NGINX_PID (worker $NGINX_WORKER) on CPU $SERVER_CPU: :$PORT TLS 1.3 + HTTP/2"

sysctl -qw kernel.bpf_stats_enabled=1
DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/uprobe-$DATE.tsv
MD=out/bench/uprobe-$DATE.md
printf 'client\tobserver\tround\treq_s\trequests\tfailed\twindow_s\tclient_cpu_s\tnginx_cpu_s\tanalyzer_cpu_s\tevents\tlost\tpt_calls\tpt_bytes\tssl_bpf_ns\tssl_bpf_runs\tgo_bpf_ns\tgo_bpf_runs\tsys_bpf_ns\tsys_bpf_runs\tother_bpf_ns\tother_bpf_runs\tloadavg1\n' >"$TSV"

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
    h2load)
        pinned 300 h2load -n "$H2_REQUESTS" -c "$H2_CONC" -m "$H2_STREAMS" "https://127.0.0.1:$PORT/"
        ;;
    go)
        pinned 300 "$TMP/goclient" -url="https://127.0.0.1:$PORT/" -h2 -insecure \
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
if name == "h2load":
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    n, bad = int(m.group(4)), int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text).group(1))
elif name == "go":
    d = json.loads(text.strip().splitlines()[-1])
    n, bad = d["ok"], d["requests"] - d["ok"]
    if d.get("protos", {}).get("HTTP/2.0", 0) != d["responses"]:
        sys.exit(f"go client did not speak HTTP/2: {d}")
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
        local args=(attach --port "$PORT" --backend ebpf --quiet --format json --out "$TMP/obs.json")
        [[ $ob == nopt ]] && args+=(--no-plaintext)
        [[ $ob == pt && $cl == go ]] && args+=(--tls-exe "$TMP/goclient")
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
    if [[ -n $pid ]]; then c0=$(jiffies "$pid"); bpf_progs "$pid" >"$TMP/progs.0"; fi
    n0=$(jiffies "$NGINX_WORKER")
    client "$cl"
    n1=$(jiffies "$NGINX_WORKER")
    if [[ -n $pid ]]; then c1=$(jiffies "$pid"); bpf_progs "$pid" >"$TMP/progs.1"; fi
    [[ -n $pid ]] && timeout 30 bpftool -j prog show >"$TMP/bpftool.1"
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
events = lost = calls = pbytes = -1
acc = {k: [0, 0] for k in ("ssl", "go", "sys", "other")}
def kind(name):
    if name.startswith("ssl_"):
        return "ssl"
    if name.startswith("go_tls_"):
        return "go"
    if name.startswith(("sys_enter_", "sys_exit_")):
        return "sys"
    return "other"
if ob != "none":
    err = open(os.path.join(tmp, "obs.err"), errors="replace").read()
    m = re.search(r"^events: (\d+) .*?; lost in kernel: (\d+)", err, re.M)
    if m:
        events, lost = int(m.group(1)), int(m.group(2))
    run = json.load(open(os.path.join(tmp, "obs.json")))["run"]
    lost = max(lost, run["lost_events"])
    pt = run.get("plaintext") or {}
    calls, pbytes = pt.get("calls", 0), pt.get("bytes", 0)
    names = {p["id"]: p.get("name", "") for p in json.load(open(os.path.join(tmp, "bpftool.1")))}
    def progs(path):
        return {int(i): (int(t), int(c)) for i, t, c in (l.split() for l in open(path) if l.strip())}
    p0, p1 = progs(os.path.join(tmp, "progs.0")), progs(os.path.join(tmp, "progs.1"))
    for pid_, (t1, c1) in p1.items():
        t0, c0 = p0.get(pid_, (0, 0))
        a = acc[kind(names.get(pid_, ""))]
        a[0] += t1 - t0
        a[1] += c1 - c0
bpf = [x for k in ("ssl", "go", "sys", "other") for x in acc[k]]
print("\t".join(map(str, [cl, ob, rnd, rps, n, bad, wall, ccpu, round(int(njif) / int(tck), 2),
    round(int(jif) / int(tck), 2), events, lost, calls, pbytes, *bpf, load])))
EOF
    tail -1 "$TSV" >&2
}

log "analyzer $REV; ${#CLIENTS[@]} clients x ${#OBSERVERS[@]} observers x $ROUNDS rounds"
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
