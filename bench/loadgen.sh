#!/usr/bin/env bash
# Benchmark of loadgen against wrk, oha and h2load on loopback.
#
#   bash bench/loadgen.sh            # from the repository root, as root
#
# What it does, in order:
#   1. installs what is missing (nginx, h2load from nghttp2-client, wrk, GNU time,
#      python3, openssl, taskset; oha with `cargo install --locked`), skipping what is there;
#   2. builds `loadgen` (release) and copies the binary aside, so a rebuild during the run
#      cannot swap it;
#   3. starts its own nginx (own config, pid file and logs in a temp dir; not the system
#      service) on 127.0.0.1 with one worker pinned to CPU 0, on three ports: HTTP/1.1,
#      h2c (prior knowledge) and HTTP/2 over TLS (self-signed certificate);
#   4. runs every client pinned to CPU 1, rounds interleaved (A, B, C, A, B, C, ...):
#        h1-max    HTTP/1.1 keep-alive, 50 connections, max rate: loadgen, wrk, oha
#        h2c-max   h2c, 10 connections x 10 streams, max rate:   loadgen, h2load
#        h2tls-max HTTP/2 over TLS, 10 x 10, max rate:          loadgen, h2load
#        *-10k     the same three at a fixed 10,000 req/s:       loadgen, oha (h1), h2load
#      then one loadgen run of 2,500,000 HTTP/1.1 requests (no --events) for peak RSS;
#   5. writes raw rows to out/bench/loadgen-<date>.tsv and the Markdown tables (medians,
#      ratios) to out/bench/loadgen-<date>.md, and prints the tables.
#
# Knobs (environment): ROUNDS (3), DUR (max-rate run seconds, 8), RATE_DUR (10),
# RATE (10000), RSS_REQUESTS (2500000), PORT_BASE (18480: uses PORT_BASE..PORT_BASE+2),
# PROFILE=1 (also record `perf record -g` profiles of loadgen for h1 and h2c, into
# out/bench/), SKIP_INSTALL=1, LOADGEN_BIN=/path/to/loadgen (benchmark that binary
# instead of building target/release/loadgen, e.g. a patched copy).
#
# Every client and nginx talk over 127.0.0.1 only. Every loop is bounded (rounds x tools)
# and every client run is under `timeout`.
set -euo pipefail

cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8}
RATE_DUR=${RATE_DUR:-10}
RATE=${RATE:-10000}
RSS_REQUESTS=${RSS_REQUESTS:-2500000}
PORT_BASE=${PORT_BASE:-18480}
PROFILE=${PROFILE:-0}
SERVER_CPU=0
CLIENT_CPU=1
H1_CONNS=50
H2_CONNS=10
H2_STREAMS=10
PY=/usr/bin/python3

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, nginx)"
(( $(nproc) >= 2 )) || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU)"

# ---------------------------------------------------------------------------- install
install_tools() {
    local missing=() cmd pkg
    for pair in nginx:nginx h2load:nghttp2-client wrk:wrk /usr/bin/time:time \
                $PY:python3 openssl:openssl taskset:util-linux ss:iproute2 pgrep:procps; do
        cmd=${pair%%:*} pkg=${pair#*:}
        if command -v "$cmd" >/dev/null 2>&1; then
            log "have $cmd"
        else
            missing+=("$pkg")
        fi
    done
    if [[ $PROFILE == 1 ]] && ! command -v perf >/dev/null 2>&1; then
        missing+=(linux-perf)
    fi
    if (( ${#missing[@]} )); then
        log "installing: apt-get install -y ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    if command -v oha >/dev/null 2>&1; then
        log "have $(oha --version)"
    else
        # The newest oha first; if it does not build on this toolchain, an older release.
        local v
        for v in "" 1.14.0 1.12.1 1.10.0; do
            log "installing oha: cargo install oha --locked ${v:+--version $v}"
            if cargo install oha --locked ${v:+--version "$v"}; then
                break
            fi
        done
        command -v oha >/dev/null 2>&1 || die "could not install oha"
        log "installed $(oha --version)"
    fi
}
if [[ ${SKIP_INSTALL:-0} == 1 ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
else
    install_tools
fi

if [[ -n ${LOADGEN_BIN:-} ]]; then
    log "using LOADGEN_BIN=$LOADGEN_BIN (not building)"
else
    log "building: cargo build --release -p loadgen"
    cargo build --release -p loadgen
    LOADGEN_BIN=target/release/loadgen
fi

# ---------------------------------------------------------------------------- set-up
TMP=$(mktemp -d /tmp/loadgen-bench.XXXXXX)
NGINX_PID=""
CHILD=""
SAMPLER=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CHILD ]]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    if [[ -n $SAMPLER ]]; then
        kill -TERM "$SAMPLER" 2>/dev/null || true
        wait "$SAMPLER" 2>/dev/null || true
    fi
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        log "stopping nginx (pid $NGINX_PID)"
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LOADGEN=$TMP/loadgen
cp "$LOADGEN_BIN" "$LOADGEN"
LOADGEN_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- loadgen 2>/dev/null) ]]; then
    LOADGEN_REV="$LOADGEN_REV+dirty"
fi
[[ $LOADGEN_BIN == target/release/loadgen ]] || LOADGEN_REV="$LOADGEN_BIN"

P_H1=$PORT_BASE P_H2C=$((PORT_BASE + 1)) P_TLS=$((PORT_BASE + 2))
for p in $P_H1 $P_H2C $P_TLS; do
    if [[ -n $(ss -Hltn "sport = :$p") ]]; then
        die "port $p is in use: set PORT_BASE"
    fi
done

log "self-signed certificate into $TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

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
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$P_H1;
        listen 127.0.0.1:$P_H2C http2;
        listen 127.0.0.1:$P_TLS ssl http2;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        location / { return 200 "ok"; }
    }
}
EOF
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" -t -q
log "starting nginx on 127.0.0.1:$P_H1 (HTTP/1.1), :$P_H2C (h2c), :$P_TLS (TLS + h2), CPU $SERVER_CPU"
taskset -c $SERVER_CPU nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 50); do
    [[ -s $TMP/nginx.pid ]] && [[ -n $(ss -Hltn "sport = :$P_TLS") ]] && break
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
log "nginx master $NGINX_PID, worker $NGINX_WORKER (affinity $(taskset -pc "$NGINX_WORKER" | awk '{print $NF}'))"

U_H1=http://127.0.0.1:$P_H1/
U_H2C=http://127.0.0.1:$P_H2C/
U_TLS=https://127.0.0.1:$P_TLS/

# ---------------------------------------------------------------------------- parsing
# parse.py TOOL FILE -> "total ok bad aborted duration_s note": responses received, 2xx
# among them, failures (non-2xx, socket/stream errors, timeouts), requests cut off by the
# end of a timed run (not failures), the tool's own measured duration, and a note.
cat >"$TMP/parse.py" <<'EOF'
import json, re, sys

tool, path = sys.argv[1], sys.argv[2]
text = open(path, errors="replace").read()

def out(total, ok, bad, aborted, dur, note="-"):
    print(total, ok, bad, aborted, f"{dur:.3f}", note.replace(" ", "_") or "-")

if tool == "loadgen":
    d = json.loads(text)
    r = d["requests"]
    codes = d.get("status_codes", {})
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    total = sum(n for c, n in codes.items() if c != "0")
    classes = ",".join(f"{c['class']}:{c['count']}" for c in d.get("classes", []))
    ov = d.get("overload", {})
    note = f"late={ov.get('late', 0)},skipped={ov.get('skipped', 0)},conns={d['connections']['opened']}"
    if classes:
        note += "," + classes
    out(total, ok, r["failed"], 0, d["duration_s"], note)
elif tool == "wrk":
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    total = int(m.group(1))
    dur = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(non2xx.group(1)) if non2xx else 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = sum(map(int, se.groups())) if se else 0
    # wrk counts 3xx as success; nginx here only answers 200.
    out(total, total - non2xx, non2xx + errs, 0, dur, f"socket_errors={errs}")
elif tool == "oha":
    d = json.loads(text)
    codes = d.get("statusCodeDistribution", {})
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    total = sum(codes.values())
    errs = d.get("errorDistribution", {})
    aborted = sum(n for e, n in errs.items() if "deadline" in e)
    bad = (total - ok) + sum(n for e, n in errs.items() if "deadline" not in e)
    note = ",".join(f"{e}:{n}" for e, n in errs.items() if "deadline" not in e) or "-"
    out(total, ok, bad, aborted, d["summary"]["total"], note)
elif tool == "h2load":
    m = re.search(r"finished in ([\d.]+)(us|ms|s|m),", text)
    dur = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    total, started, done, succ, failed, errored, timeout = map(int, r.groups())
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    ok = min(int(s.group(1)), done)
    # A timed run (-D) stops with streams open: started but not done, cut off by the
    # end of the run, not failures.
    out(done, ok, max(failed, done - ok), started - done, dur,
        f"failed={failed},errored={errored},timeout={timeout}")
else:
    sys.exit(f"unknown tool {tool}")
EOF

# ---------------------------------------------------------------------------- runs
DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/loadgen-$DATE.tsv
MD=out/bench/loadgen-$DATE.md
printf '%s\n' "date	scenario	mode	tool	round	conns	streams	target_rps	dur_s	wall_s	user_s	sys_s	cpu_s	maxrss_kb	total	ok	bad	aborted	req_s	cpu_s_per_100k	nginx_cpu_s	cpu0_busy_s	cpu1_busy_s	cpu1_softirq_s	cpu1_other_s	client_runq_wait_s	nginx_runq_wait_s	loadavg1	rc	note	command" >"$TSV"

CLK_TCK=$(getconf CLK_TCK)
# "busy,softirq" jiffies of one CPU (busy: user nice system irq softirq steal). Loopback
# traffic a client sends is delivered to nginx in softirq on the client's CPU, mostly
# not charged to the client process: it is kept apart from cpu1_other_s (busy - softirq
# - client). These are tick-sampled (kernel with TICK_CPU_ACCOUNTING): a timer-driven
# client (a fixed rate) can alias with the tick, so cpu1_other_s is only a hint; the
# run-queue waits below are the contention measure.
cpu_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 "," $8 }' /proc/stat; }
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Run-queue wait (ns) of one task: time it was ready to run but the CPU ran something else.
proc_wait() { awk '{ print $2 }' "/proc/$1/schedstat" 2>/dev/null || echo 0; }

# The contention a client felt: sums the run-queue wait of its threads
# (/proc/PID/task/*/schedstat, precise, unlike the tick-sampled /proc/stat) every 0.2 s
# while it runs, into FILE. TIMEOUT_PID is the `timeout` in front of taskset + time.
sample_wait() { # TIMEOUT_PID FILE LIMIT_S
    local t=$1 f=$2 n=$(($3 * 5)) tp="" pid="" line
    echo 0 >"$f"
    for _ in $(seq 1 "$n"); do
        kill -0 "$t" 2>/dev/null || return 0
        if [[ -z $pid ]]; then
            tp=$(pgrep -P "$t" | head -1 || true)
            [[ -n $tp ]] && pid=$(pgrep -P "$tp" | head -1 || true)
        fi
        if [[ -n $pid ]]; then
            line=$(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ d += $2 } END { if (NR) print d }')
            [[ -n $line ]] && echo "$line" >"$f"
        fi
        sleep 0.2
    done
}

# run SCENARIO MODE TOOL ROUND CONNS STREAMS TARGET_RPS -- COMMAND...
run() {
    local scen=$1 mode=$2 tool=$3 round=$4 conns=$5 streams=$6 target=$7
    shift 8
    local out=$TMP/run.out tf=$TMP/run.time rc=0 limit
    if [[ $mode == max ]]; then limit=$((DUR + 60)); else limit=$((RATE_DUR + 60)); fi
    if [[ $scen == rss ]]; then limit=900; fi
    local c0a c1a nga c0b c1b ngb load
    load=$(cut -d' ' -f1 /proc/loadavg)
    local nwa nwb
    c0a=$(cpu_busy $SERVER_CPU) c1a=$(cpu_busy $CLIENT_CPU) nga=$(proc_cpu "$NGINX_WORKER")
    nwa=$(proc_wait "$NGINX_WORKER")
    # In the background and waited for, so that Ctrl-C (trapped) interrupts the wait.
    timeout -k 5 "$limit" taskset -c $CLIENT_CPU /usr/bin/time -o "$tf" -f '%e %U %S %M' \
        "$@" >"$out" 2>"$out.err" &
    CHILD=$!
    sample_wait "$CHILD" "$TMP/run.wait" "$limit" &
    SAMPLER=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    wait "$SAMPLER" || true
    SAMPLER=""
    c0b=$(cpu_busy $SERVER_CPU) c1b=$(cpu_busy $CLIENT_CPU) ngb=$(proc_cpu "$NGINX_WORKER")
    nwb=$(proc_wait "$NGINX_WORKER")
    local cwait nwait
    cwait=$(awk '{ printf "%.2f", $1 / 1e9 }' "$TMP/run.wait")
    nwait=$(awk -v a="$nwa" -v b="$nwb" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    local wall user sys rss
    if ! read -r wall user sys rss < <(grep -E '^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$' "$tf"); then
        log "$scen $tool round $round: no timing (rc $rc): $(tail -3 "$out.err")"
        return 1
    fi
    local total ok bad aborted dur note
    if ! read -r total ok bad aborted dur note < <($PY "$TMP/parse.py" "$tool" "$out" 2>"$out.perr"); then
        log "$scen $tool round $round: cannot parse output (rc $rc): $(tail -3 "$out.perr") $(tail -3 "$out.err")"
        return 1
    fi
    local row cmdline="$*"
    cmdline=${cmdline//$LOADGEN/target/release/loadgen}
    row=$($PY - "$wall" "$user" "$sys" "$ok" "$dur" "$c0a" "$c0b" "$c1a" "$c1b" "$nga" "$ngb" "$CLK_TCK" <<'EOF'
import sys
wall, user, sys_, ok, dur = map(float, sys.argv[1:6])
(c0a, _), (c0b, _), (c1a, s1a), (c1b, s1b) = (map(float, a.split(",")) for a in sys.argv[6:10])
nga, ngb, hz = map(float, sys.argv[10:13])
cpu = user + sys_
c1, si1 = (c1b - c1a) / hz, (s1b - s1a) / hz
print("\t".join([f"{cpu:.2f}", f"{ok / dur if dur else 0:.0f}",
                 f"{cpu / ok * 1e5 if ok else float('nan'):.3f}", f"{(ngb - nga) / hz:.2f}",
                 f"{(c0b - c0a) / hz:.2f}", f"{c1:.2f}", f"{si1:.2f}",
                 f"{max(0.0, c1 - si1 - cpu):.2f}"]))
EOF
)
    local cpu req_s per100k ngcpu c0 c1 si1 c1other
    IFS=$'\t' read -r cpu req_s per100k ngcpu c0 c1 si1 c1other <<<"$row"
    printf '%s\n' "$DATE	$scen	$mode	$tool	$round	$conns	$streams	$target	$dur	$wall	$user	$sys	$cpu	$rss	$total	$ok	$bad	$aborted	$req_s	$per100k	$ngcpu	$c0	$c1	$si1	$c1other	$cwait	$nwait	$load	$rc	$note	$cmdline" >>"$TSV"
    log "$(printf '%-9s %-4s %-7s r%s  %9s req/s  ok %9s  bad %s  cpu %5ss  %7s cpu-s/100k  rss %6s kB  nginx %ss  waited for CPU: client %ss nginx %ss  rc %s' \
        "$scen" "$mode" "$tool" "$round" "$req_s" "$ok" "$bad" "$cpu" "$per100k" "$rss" "$ngcpu" "$cwait" "$nwait" "$rc")"
    if [[ $tool == loadgen && $rc -ne 0 ]] || (( bad > 0 )); then
        log "  note: $note"
    fi
    # loadgen exits 0 after failed requests too; the row says how many.
    return 0
}

LG=("$LOADGEN" attack --quiet --report json)
# oha's JSON switch: --output-format json since 1.9, -j before.
if oha --help 2>/dev/null | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(-j); fi
per_client_rps=$(( RATE / H2_CONNS ))

scenario_cmd() { # SCENARIO MODE TOOL -> sets CMD
    local scen=$1 mode=$2 tool=$3 d
    d=$([[ $mode == max ]] && echo "$DUR" || echo "$RATE_DUR")
    case "$scen/$mode/$tool" in
        h1/max/loadgen)    CMD=("${LG[@]}" --http1 --users $H1_CONNS --connections $H1_CONNS --duration "${d}s" "$U_H1") ;;
        h1/max/wrk)        CMD=(wrk -t1 -c$H1_CONNS -d"${d}s" "$U_H1") ;;
        h1/max/oha)        CMD=(oha --no-tui "${OHA_JSON[@]}" -c $H1_CONNS -z "${d}s" "$U_H1") ;;
        h1/rate/loadgen)   CMD=("${LG[@]}" --http1 --rate "$RATE" --connections $H1_CONNS --duration "${d}s" "$U_H1") ;;
        h1/rate/oha)       CMD=(oha --no-tui "${OHA_JSON[@]}" -c $H1_CONNS -q "$RATE" -z "${d}s" "$U_H1") ;;
        h2c/max/loadgen)   CMD=("${LG[@]}" --h2c --users $((H2_CONNS * H2_STREAMS)) --connections $H2_CONNS --max-streams-per-conn $H2_STREAMS --duration "${d}s" "$U_H2C") ;;
        h2c/max/h2load)    CMD=(h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D "$d" "$U_H2C") ;;
        h2c/rate/loadgen)  CMD=("${LG[@]}" --h2c --rate "$RATE" --connections $H2_CONNS --max-streams-per-conn $H2_STREAMS --duration "${d}s" "$U_H2C") ;;
        h2c/rate/h2load)   CMD=(h2load -t1 -c$H2_CONNS -m$H2_STREAMS --rps $per_client_rps -D "$d" "$U_H2C") ;;
        h2tls/max/loadgen) CMD=("${LG[@]}" --http2 --insecure --users $((H2_CONNS * H2_STREAMS)) --connections $H2_CONNS --max-streams-per-conn $H2_STREAMS --duration "${d}s" "$U_TLS") ;;
        h2tls/max/h2load)  CMD=(h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D "$d" "$U_TLS") ;;
        h2tls/rate/loadgen) CMD=("${LG[@]}" --http2 --insecure --rate "$RATE" --connections $H2_CONNS --max-streams-per-conn $H2_STREAMS --duration "${d}s" "$U_TLS") ;;
        h2tls/rate/h2load) CMD=(h2load -t1 -c$H2_CONNS -m$H2_STREAMS --rps $per_client_rps -D "$d" "$U_TLS") ;;
        *) die "no command for $scen/$mode/$tool" ;;
    esac
}

# scenario mode tools (space-separated)
PLAN=(
    "h1 max loadgen wrk oha"
    "h2c max loadgen h2load"
    "h2tls max loadgen h2load"
    "h1 rate loadgen oha"
    "h2c rate loadgen h2load"
    "h2tls rate loadgen h2load"
)

log "date $DATE, loadgen $LOADGEN_REV, $(nproc) CPUs, kernel $(uname -r), $ROUNDS rounds"
log "versions: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(oha --version); h2load $(h2load --version | awk '{print $2}'); $(nginx -v 2>&1 | cut -d' ' -f3)"
for entry in "${PLAN[@]}"; do
    read -r scen mode tools <<<"$entry"
    for round in $(seq 1 "$ROUNDS"); do
        for tool in $tools; do
            scenario_cmd "$scen" "$mode" "$tool"
            if [[ $scen == h1 ]]; then c=$H1_CONNS s=1; else c=$H2_CONNS s=$H2_STREAMS; fi
            t=$([[ $mode == rate ]] && echo "$RATE" || echo max)
            run "$scen" "$mode" "$tool" "$round" "$c" "$s" "$t" -- "${CMD[@]}"
        done
    done
done

# ---------------------------------------------------------------------------- RSS run
# loadgen has no request count: an open-model run of exactly RSS_REQUESTS requests at a
# rate below its HTTP/1.1 capacity: the largest whole rate that divides RSS_REQUESTS,
# between 5,000/s and 70% of the median max rate measured above (at most 50,000/s), so
# that rate x whole seconds = RSS_REQUESTS.
h1max=$(awk -F'\t' '$2 == "h1" && $3 == "max" && $4 == "loadgen" { print $19 }' "$TSV" | sort -n |
    awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }')
read -r rss_rate rss_dur < <($PY - "$RSS_REQUESTS" "$h1max" <<'EOF'
import math, sys
n, cap = int(sys.argv[1]), min(50000, int(0.7 * float(sys.argv[2])))
fits = [r for r in range(5000, max(cap, 5000) + 1) if n % r == 0]
r = fits[-1] if fits else max(cap, 5000)
print(r, math.ceil(n / r))
EOF
)
log "peak RSS run: $RSS_REQUESTS requests = $rss_rate req/s x ${rss_dur}s, HTTP/1.1, $H1_CONNS connections, no --events"
run rss rate loadgen 1 $H1_CONNS 1 "$rss_rate" -- "${LG[@]}" --http1 --rate "$rss_rate" \
    --connections $H1_CONNS --duration "${rss_dur}s" "$U_H1"

# ---------------------------------------------------------------------------- profiles
if [[ $PROFILE == 1 ]]; then
    for scen in h1 h2c; do
        scenario_cmd "$scen" max loadgen
        log "perf record -g of loadgen, $scen max rate -> out/bench/perf-$scen-$DATE.txt"
        timeout -k 5 $((DUR + 60)) taskset -c $CLIENT_CPU perf record -q -g -o "$TMP/perf.data" -- "${CMD[@]}" >/dev/null 2>"$TMP/perf.err" || true
        {
            echo "## perf report --no-children --stdio | head -60"
            perf report -i "$TMP/perf.data" --no-children --stdio 2>/dev/null | head -60
            echo "## perf report --no-children --stdio -g none --percent-limit 0.7"
            perf report -i "$TMP/perf.data" --no-children --stdio -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$'
            echo "## perf report --no-children --stdio -g none --sort dso"
            perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$'
        } >"out/bench/perf-$scen-$DATE.txt" || true
    done
fi

# ---------------------------------------------------------------------------- summary
{
    echo "Date $DATE; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r);"
    echo "loadgen $LOADGEN_REV; $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(oha --version); h2load $(h2load --version | awk '{print $2}'); nginx $(nginx -v 2>&1 | cut -d/ -f2)."
    echo "nginx: 1 worker on CPU $SERVER_CPU; clients on CPU $CLIENT_CPU; $ROUNDS interleaved rounds, medians; raw rows: $TSV"
    echo
    $PY - "$TSV" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(xs):
    xs = [float(x) for x in xs]
    return st.median(xs) if xs else float("nan")
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["mode"]), {}).setdefault(r["tool"], []).append(r)
names = {"h1": "HTTP/1.1 keep-alive", "h2c": "h2c (prior knowledge)", "h2tls": "HTTP/2 over TLS", "rss": "peak RSS run"}
print("| scenario | load | tool | conns x streams | runs | req/s | CPU-s / 100k req | client CPU-s | peak RSS (MB) | ok / total | failed | nginx CPU-s | client waited for CPU (s) | nginx waited for CPU (s) |")
print("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for (scen, mode), tools in groups.items():
    for tool, rs in tools.items():
        load = "max rate" if mode == "max" else f"{int(rs[0]['target_rps']):,} req/s"
        if scen == "rss":
            load = f"{int(rs[0]['target_rps']):,} req/s x {float(rs[0]['dur_s']):.0f} s"
        ok = int(med([r["ok"] for r in rs])); tot = int(med([r["total"] for r in rs]))
        print(f"| {names[scen]} | {load} | {tool} | {rs[0]['conns']} x {rs[0]['streams']} | {len(rs)} "
              f"| {med([r['req_s'] for r in rs]):,.0f} | {med([r['cpu_s_per_100k'] for r in rs]):.3f} "
              f"| {med([r['cpu_s'] for r in rs]):.2f} | {med([r['maxrss_kb'] for r in rs]) / 1024:.1f} "
              f"| {ok:,} / {tot:,} | {sum(int(r['bad']) for r in rs)} "
              f"| {med([r['nginx_cpu_s'] for r in rs]):.2f} | {med([r['client_runq_wait_s'] for r in rs]):.2f} "
              f"| {med([r['nginx_runq_wait_s'] for r in rs]):.2f} |")
print()
print("| scenario | load | loadgen / other | CPU per 100k req (lower is better) | req/s (higher is better) |")
print("| --- | --- | --- | ---: | ---: |")
for (scen, mode), tools in groups.items():
    if "loadgen" not in tools or len(tools) < 2:
        continue
    lg = tools["loadgen"]
    for tool, rs in tools.items():
        if tool == "loadgen":
            continue
        c = med([r["cpu_s_per_100k"] for r in lg]) / med([r["cpu_s_per_100k"] for r in rs])
        q = med([r["req_s"] for r in lg]) / med([r["req_s"] for r in rs])
        load = "max rate" if mode == "max" else f"{int(rs[0]['target_rps']):,} req/s"
        print(f"| {names[scen]} | {load} | loadgen / {tool} | {c:.2f} | {q:.2f} |")
EOF
} >"$MD"
log "raw rows: $TSV; tables: $MD"
cat "$MD"
