#!/usr/bin/env bash
# What the analyzer's certificate probe (issue 12) costs: the time it adds to the
# analyzer's stop, its CPU, and the packets it sends.
#
#   bash bench/probe.sh          # from the repository root, as root
#
# After a live run the analyzer makes one TLS handshake of its own per (server address,
# SNI) whose handshakes a client gave up (analyzer-user/src/tls_probe/), sequentially,
# each bounded by --probe-timeout for the connect and again for the handshake, at most
# 32 per run; `--no-probe` turns it off. It runs before the report is written, so it
# lengthens the stop.
#
# Server: a small Python TLS server (ssl module, TLS 1.3, a self-signed EC certificate
# for right.test only) on 127.0.0.1:PORT, started afresh for each run; it answers
# `HTTP/1.1 200 ok` and closes. Client: curl 7.x over TLS 1.3 trusting that certificate
# (--cacert) but asking for wrongN.test (--resolve), twice per name: curl completes the
# handshake, finds the name wrong, sends an encrypted close_notify and closes (the
# probe's "client closed after handshake" candidate, as in
# tests/tests/analyzer_tls_probe.rs). Cases:
#   pairsN    N distinct SNIs on the one address: N probes, each answered
#   silentN   the same, then the server stops answering before the analyzer stops (it
#             still accepts TCP connections, from the kernel's backlog, and never reads
#             or writes): N probes, each ending at --probe-timeout in the handshake.
#             The worst case short of a connect that hangs too (2 x the timeout each).
# Modes: probe (the default: no --cacert, so the system roots are loaded too, as a user
# would run it) and noprobe (`--no-probe`). The analyzer is `analyzer attach --port PORT
# --backend ebpf --quiet --format json --out FILE [--probe-timeout T]`, run under a small
# Python wrapper that forwards SIGTERM and reads the exit's rusage. Rounds are
# interleaved: each round runs every case (order rotated) under both modes (order
# rotated).
#
# Per run: stop_s, from SIGTERM to the analyzer's exit (report written); the analyzer's
# user+sys CPU during the stop (rusage at exit minus /proc/PID/stat before the signal);
# the probes in the report and how they ended; events lost (run.lost_events and the
# final stderr line); the packets and IP bytes on port PORT during the stop, both ways
# (tcpdump -i lo, started before the signal: on loopback each packet is seen once), and
# the connections the probe opened (SYNs). Rows: out/bench/probe-<date>.tsv; medians:
# out/bench/probe-<date>.md, printed at the end. "added" is the median over rounds of
# (stop_s with the probe - stop_s with --no-probe in the same round).
#
# Knobs: ROUNDS (3), PORT (18621), CASES ("pairs1 pairs20 silent1 silent5"; any pairsN or
# silentN, N <= 32 for N probes; silent20 adds 40 s to each of its runs with the probe), MODES
# ("noprobe probe"), CONNS_PER_PAIR (2), PROBE_TIMEOUT (unset: the default, 2s), BACKEND
# (ebpf; raw: the AF_PACKET backend, whose stop has no BPF programs to detach, so the
# probe's share of the stop stands out of less noise),
# SKIP_BUILD=1, ANALYZER=/path with ANALYZER_REV, SUMMARY=out/bench/probe-<date>.tsv.
# Installs tcpdump when missing. Traffic: 127.0.0.1 only. Every process is under
# `timeout`; every wait and loop is bounded; any exit stops what the script started and
# removes the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18621}
CONNS_PER_PAIR=${CONNS_PER_PAIR:-2}
BACKEND=${BACKEND:-ebpf}
read -r -a CASES <<<"${CASES:-pairs1 pairs20 silent1 silent5}"
read -r -a MODES <<<"${MODES:-noprobe probe}"
log() { printf '[probe] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# summary TSV LABEL: the Markdown table of a run's rows, on stdout.
summary() {
    python3 - "$1" "$2" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda xs: st.median(xs) if xs else float("nan")
f = lambda r, k: float(r[k])
print(f"analyzer {sys.argv[2]}, {sys.argv[1]}; medians of {len({r['round'] for r in rows})} rounds; "
      "added: median over rounds of (stop with the probe - stop with --no-probe, same round)\n")
print("| case | mode | stop, s | added, s | added per probe, ms | analyzer CPU in the stop, s "
      "| probes (answered / timed out / other) | probe packets out / in | probe IP bytes out / in "
      "| connections the probe opened | probes' span on the wire, s | lost (max) |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for case in dict.fromkeys(r["case"] for r in rows):
    base = {r["round"]: r for r in rows if r["case"] == case and r["mode"] == "noprobe"}
    for mode in ("noprobe", "probe"):
        rs = [r for r in rows if r["case"] == case and r["mode"] == mode]
        if not rs:
            continue
        added = [f(r, "stop_s") - f(base[r["round"]], "stop_s") for r in rs if r["round"] in base]
        n = med([f(r, "probes") for r in rs])
        cells = [case, "--no-probe" if mode == "noprobe" else "probe", f"{med([f(r, 'stop_s') for r in rs]):.3f}"]
        if mode == "noprobe":
            cells += ["-", "-"]
        else:
            cells.append(f"{med(added):.3f}" if added else "-")
            cells.append(f"{med(added) / n * 1e3:.0f}" if added and n > 0 else "-")
        cells.append(f"{med([f(r, 'stop_cpu_s') for r in rs]):.2f}")
        cells.append(f"{med([f(r, 'probes') for r in rs]):.0f} ({med([f(r, 'answered') for r in rs]):.0f} / "
                     f"{med([f(r, 'timed_out') for r in rs]):.0f} / {med([f(r, 'other') for r in rs]):.0f})")
        cells.append(f"{med([f(r, 'pkts_out') for r in rs]):.0f} / {med([f(r, 'pkts_in') for r in rs]):.0f}")
        cells.append(f"{med([f(r, 'bytes_out') for r in rs]):,.0f} / {med([f(r, 'bytes_in') for r in rs]):,.0f}")
        cells.append(f"{med([f(r, 'syns') for r in rs]):.0f}")
        cells.append(f"{med([f(r, 'wire_span_s') for r in rs]):.3f}" if mode == "probe" else "-")
        cells.append(str(max(int(r["lost"]) for r in rs)))
        print("| " + " | ".join(cells) + " |")
EOF
}
if [[ -n ${SUMMARY:-} ]]; then
    summary "$SUMMARY" "${ANALYZER_REV:-?}"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "run as root"
for pair in tcpdump:tcpdump openssl:openssl curl:curl; do
    command -v "${pair%%:*}" >/dev/null || timeout 600 apt-get install -y -qq "${pair#*:}" >/dev/null
done
[[ -z $(ss -Hltn "sport = :$PORT") ]] || die "port $PORT is in use: set PORT"

TMP=$(mktemp -d /tmp/faultline-probe.XXXXXX)
OBS=""
SERVER=""
DUMP=""
# stop PID: SIGTERM to a process we started (a `timeout`, which passes it on to its
# process group, or our wrapper); SIGKILL to it and its children after 5 s.
stop() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in {1..50}; do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    pkill -KILL -P "$1" 2>/dev/null || true
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    [[ -n $DUMP ]] && stop "$DUMP"
    [[ -n $OBS ]] && stop "$OBS"
    [[ -n $SERVER ]] && stop "$SERVER"
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
    cp target/release/analyzer "$TMP/analyzer"
    REV=$(git rev-parse --short HEAD)
    [[ -z $(git status --porcelain -- analyzer-common analyzer-ebpf analyzer-user) ]] || REV="$REV+dirty"
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=right.test -addext subjectAltName=DNS:right.test \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

# The TLS server: answers while $TMP/silent does not exist; then accepts and holds.
cat >"$TMP/server.py" <<'EOF'
import os, socket, ssl, sys, threading, time
port, cert, key, silent = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(128)
print("listening", flush=True)
held = []
def serve(c):
    try:
        c.settimeout(10)
        s = ctx.wrap_socket(c, server_side=True)
        if s.recv(4096):
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        s.close()
    except (OSError, ssl.SSLError):
        c.close()
while True:  # bounded by the `timeout` it runs under
    c, _ = ls.accept()
    if os.path.exists(silent):
        held.append(c)
    else:
        threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
# The analyzer's wrapper: forwards SIGTERM; writes "cpu_s stop_s status" at its exit.
cat >"$TMP/runwait.py" <<'EOF'
import os, signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[2:])
at = []
def term(sig, frame):
    at.append(time.monotonic())
    p.send_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGINT, term)
_, status, ru = os.wait4(p.pid, 0)
end = time.monotonic()
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_utime + ru.ru_stime:.3f} {end - at[0] if at else -1:.4f} {status}\n")
EOF
# Reads the pcap of the stop: packets, IP bytes and SYNs to and from PORT.
cat >"$TMP/pcap.py" <<'EOF'
import struct, sys
port = int(sys.argv[2])
data = open(sys.argv[1], "rb").read()
magic = struct.unpack("<I", data[:4])[0]
e = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
link = struct.unpack(e + "I", data[20:24])[0]
off, c = 24, {"pkts_out": 0, "pkts_in": 0, "bytes_out": 0, "bytes_in": 0, "syns": 0}
first = last = None
while off + 16 <= len(data):
    sec, usec, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    ip = pkt[14:] if link == 1 else pkt[16:] if link == 113 else pkt
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        continue
    ihl = (ip[0] & 15) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
    flags = ip[ihl + 13]
    if dport == port:
        c["pkts_out"] += 1; c["bytes_out"] += total
        if flags & 0x02 and not flags & 0x10:
            c["syns"] += 1
            first = first if first is not None else sec + usec / 1e6
    elif sport == port:
        c["pkts_in"] += 1; c["bytes_in"] += total
    else:
        continue
    last = sec + usec / 1e6
# The probes' span on the wire: the first SYN to the last packet (the closes included).
span = last - first if first is not None else 0
print(" ".join(str(c[k]) for k in ("pkts_out", "pkts_in", "bytes_out", "bytes_in", "syns")), f"{span:.4f}")
EOF

DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p out/bench
TSV=out/bench/probe-$DATE.tsv
MD=out/bench/probe-$DATE.md
printf 'case\tmode\tround\tpairs\tcurl_failed\tstop_s\tstop_cpu_s\texit_status\tprobes\tanswered\ttimed_out\tother\tpkts_out\tpkts_in\tbytes_out\tbytes_in\tsyns\twire_span_s\tlost\tpt_calls\tloadavg1\n' >"$TSV"
TCK=$(getconf CLK_TCK)
jiffies() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# one CASE MODE ROUND: a fresh server, an analyzer, the failing curls, the stop; a row.
one() {
    local case=$1 mode=$2 round=$3 i p k wrap pid pairs failed=0 j0
    pairs=${case//[!0-9]/}
    rm -f "$TMP"/obs.* "$TMP"/silent "$TMP"/stop.pcap "$TMP"/dump.err "$TMP"/server.out
    timeout 900 python3 "$TMP/server.py" "$PORT" "$TMP/cert.pem" "$TMP/key.pem" "$TMP/silent" \
        >"$TMP/server.out" 2>&1 &
    SERVER=$!
    for ((i = 0; i < 50; i++)); do grep -qs listening "$TMP/server.out" && break; sleep 0.1; done
    grep -qs listening "$TMP/server.out" || die "server did not start: $(cat "$TMP/server.out")"
    local args=(attach --port "$PORT" --backend "$BACKEND" --quiet --format json --out "$TMP/obs.json")
    [[ $mode == noprobe ]] && args+=(--no-probe)
    [[ -n ${PROBE_TIMEOUT:-} ]] && args+=(--probe-timeout "$PROBE_TIMEOUT")
    timeout 900 python3 "$TMP/runwait.py" "$TMP/obs.rusage" "$TMP/analyzer" "${args[@]}" \
        >/dev/null 2>"$TMP/obs.err" &
    OBS=$!
    for ((i = 0; i < 300; i++)); do
        grep -qs '^attached:' "$TMP/obs.err" && break
        kill -0 "$OBS" 2>/dev/null || die "analyzer exited: $(cat "$TMP/obs.err")"
        sleep 0.1
    done
    grep -q '^attached:' "$TMP/obs.err" || die "analyzer not attached after 30 s: $(cat "$TMP/obs.err")"
    # $OBS is `timeout`, its child the wrapper, the wrapper's child the analyzer.
    wrap=$(pgrep -P "$OBS" | head -1 || true)
    pid=$([[ -n $wrap ]] && pgrep -P "$wrap" | head -1 || true)
    [[ -n $pid ]] || die "no analyzer process under the wrapper $wrap"
    for ((p = 1; p <= pairs; p++)); do
        for ((k = 0; k < CONNS_PER_PAIR; k++)); do
            timeout 20 curl -s -o /dev/null --tlsv1.3 --cacert "$TMP/cert.pem" \
                --resolve "wrong$p.test:$PORT:127.0.0.1" "https://wrong$p.test:$PORT/" || failed=$((failed + 1))
        done
    done
    [[ $case == silent* ]] && touch "$TMP/silent"
    sleep 0.5
    timeout 900 tcpdump -i lo -n -s 128 -U --immediate-mode -w "$TMP/stop.pcap" "tcp port $PORT" 2>"$TMP/dump.err" &
    DUMP=$!
    for ((i = 0; i < 100; i++)); do grep -qs 'listening on' "$TMP/dump.err" && break; sleep 0.05; done
    grep -qs 'listening on' "$TMP/dump.err" || die "tcpdump did not start: $(cat "$TMP/dump.err")"
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    j0=$(jiffies "$pid")
    # To the wrapper alone (`timeout` would signal its whole group: the analyzer twice).
    kill -TERM "$wrap"
    for ((i = 0; i < 3000; i++)); do kill -0 "$OBS" 2>/dev/null || break; sleep 0.05; done
    wait "$OBS" 2>/dev/null || true
    OBS=""
    sleep 0.2
    kill -INT "$DUMP" 2>/dev/null || true
    wait "$DUMP" 2>/dev/null || true
    DUMP=""
    stop "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    local counts
    counts=$(python3 "$TMP/pcap.py" "$TMP/stop.pcap" "$PORT")
    python3 - "$case" "$mode" "$round" "$pairs" "$failed" "$TMP" "$j0" "$TCK" "$load" "$counts" >>"$TSV" <<'EOF'
import json, os, re, sys
case, mode, rnd, pairs, failed, tmp, j0, tck, load, counts = sys.argv[1:11]
cpu, stop_s, status = open(os.path.join(tmp, "obs.rusage")).read().split()
report = json.load(open(os.path.join(tmp, "obs.json")))
run = report["run"]
lost = run["lost_events"]
m = re.search(r"lost in kernel: (\d+)", open(os.path.join(tmp, "obs.err"), errors="replace").read())
if m:
    lost = max(lost, int(m.group(1)))
probes = report.get("probes") or []
answered = sum(1 for p in probes if p["outcome"].get("presented"))
timed_out = sum(1 for p in probes if "timeout" in json.dumps(p["outcome"].get("error") or "").lower())
other = len(probes) - answered - timed_out
stop_cpu = float(cpu) - int(j0) / int(tck)
calls = (run.get("plaintext") or {}).get("calls", 0)
print("\t".join(map(str, [case, mode, rnd, pairs, failed, stop_s, f"{stop_cpu:.2f}", status, len(probes),
    answered, timed_out, other, *counts.split(), lost, calls, load])))
EOF
    tail -1 "$TSV" >&2
}

log "analyzer $REV, backend $BACKEND; ${#CASES[@]} cases x ${#MODES[@]} modes x $ROUNDS rounds"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#CASES[@]}; k++)); do
        c=${CASES[$(((k + r) % ${#CASES[@]}))]}
        for ((o = 0; o < ${#MODES[@]}; o++)); do
            one "$c" "${MODES[$(((o + r + k) % ${#MODES[@]}))]}" "$r"
        done
    done
done

summary "$TSV" "$REV" >"$MD"
cat "$MD"
log "rows: $TSV  table: $MD"
