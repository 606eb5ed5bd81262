//! Privileged end-to-end tests of the analyzer's verdicts: for each testbed fault, a
//! client runs with `analyzer attach` in the same process (the library path the binary
//! uses), and the report's top cause must be the right one, with its evidence. loadgen
//! runs join its events by socket cookie; curl runs (a foreign client) get the TCP-level
//! verdicts from kernel evidence alone. Lost kernel events must be zero. Needs root.
mod analyzer_support;

use std::{path::PathBuf, process::Command, time::Duration};

use analyzer::{
    attach::{AttachOptions, Backend},
    recording::FilterConfig,
    report::Report,
    session::SessionOptions,
};
use analyzer_support::{Session, curl, text, top};
use clap::Parser;
use loadgen::cli::{Cli, Command as LgCommand};
use serde_json::Value;
use testbed::{Config, Testbed};

enum Client<'a> {
    /// loadgen with these flags (URL, TLS and events added here).
    Loadgen(&'a [&'a str]),
    /// curl with these flags, `count` times (URL added here).
    Curl(&'a [&'a str], usize),
    /// curl over TLS (https URL, the testbed's name and CA added here), `count` times.
    CurlTls(&'a [&'a str], usize),
    /// loadgen over h2c (http URL, `--h2c` added here).
    LoadgenH2c(&'a [&'a str]),
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-analyzer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Starts the testbed with `fault`, attaches the analyzer filtered on its port, runs the
/// client, stops the analyzer and returns the report as JSON.
fn analyze(fault: &str, client: Client<'_>) -> Value {
    analyze_on(Backend::Ebpf, fault, client, true)
}

/// [`analyze`] with `backend`; `join` false leaves loadgen's events out of the report,
/// so the verdict rests on what the backend saw alone.
fn analyze_on(backend: Backend, fault: &str, client: Client<'_>, join: bool) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let who = match client {
        Client::Loadgen(_) => "loadgen",
        Client::LoadgenH2c(_) => "loadgen-h2c",
        Client::Curl(..) => "curl",
        Client::CurlTls(..) => "curl-tls",
    };
    let stem: String = format!("{who}-{fault}-{backend:?}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let events = tmp(&format!("{stem}.events.ndjson"));
    let raw = tmp(&format!("{stem}.kernel.ndjson"));
    let _ = std::fs::remove_file(&events);
    let session = Session::start(SessionOptions {
        attach: AttachOptions {
            filter: FilterConfig {
                ports: vec![addr.port()],
                ..FilterConfig::default()
            },
            raw_events: Some(raw.clone()),
            backend,
            ..AttachOptions::default()
        },
        loadgen_events: match client {
            Client::Loadgen(_) | Client::LoadgenH2c(_) if join => vec![events.clone()],
            _ => vec![],
        },
        all: false,
        ..SessionOptions::default()
    });
    run_client(&rt, &tb, fault, client, &events);
    let (outcome, report) = session.stop_drained();
    assert_eq!(outcome.decode_errors, 0);
    assert!(outcome.events > 0, "the analyzer saw events: {outcome:?}");
    rt.block_on(tb.shutdown());
    let json = serde_json::to_value(&report).unwrap();
    std::fs::write(
        tmp(&format!("{stem}.report.json")),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    json
}

/// Runs `client` against `fault`'s listener; loadgen writes its events to `events`.
fn run_client(
    rt: &tokio::runtime::Runtime,
    tb: &Testbed,
    fault: &str,
    client: Client<'_>,
    events: &std::path::Path,
) {
    let addr = tb.addr(fault).unwrap();
    let events = events.to_str().unwrap();
    match client {
        Client::Loadgen(flags) => {
            let name = tb.server_name().to_owned();
            let url = format!("https://{name}:{}/", addr.port());
            let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
            let ca = tb.ca_path().to_str().unwrap().to_owned();
            let mut argv = vec!["--resolve", &resolve, "--cacert", &ca];
            argv.extend_from_slice(flags);
            run_loadgen(rt, &url, events, &argv);
        }
        Client::LoadgenH2c(flags) => {
            let mut argv = vec!["--h2c"];
            argv.extend_from_slice(flags);
            run_loadgen(rt, &format!("http://{addr}/"), events, &argv);
        }
        Client::CurlTls(flags, count) => {
            let name = tb.server_name();
            let mut args: Vec<String> = vec![
                "--resolve".into(),
                format!("{name}:{}:{}", addr.port(), addr.ip()),
                "--cacert".into(),
                tb.ca_path().to_str().unwrap().to_owned(),
            ];
            args.extend(flags.iter().map(|f| (*f).to_owned()));
            args.push(format!("https://{name}:{}/", addr.port()));
            run_failing_curl(fault, &args, count);
        }
        Client::Curl(flags, count) => {
            let mut args: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
            args.push(format!("http://{addr}/"));
            run_failing_curl(fault, &args, count);
        }
    }
}

/// `loadgen attack URL --events EVENTS --quiet FLAGS...`, in this process.
fn run_loadgen(rt: &tokio::runtime::Runtime, url: &str, events: &str, flags: &[&str]) {
    let mut argv = vec!["loadgen", "attack", url, "--events", events, "--quiet"];
    argv.extend_from_slice(flags);
    let LgCommand::Attack(a) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let cfg = loadgen::cli::to_config(&a).unwrap();
    rt.block_on(loadgen::run::run(cfg, Value::Null, false))
        .unwrap();
}

/// curl with `args`, `count` times; each run must fail (the fault is in the way).
fn run_failing_curl(fault: &str, args: &[String], count: usize) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..count {
        assert_ne!(curl(&args), Some(0), "curl against {fault} must fail");
    }
}

/// The top cause, which must be `id` and counted at least once.
fn assert_top<'a>(report: &'a Value, id: &str) -> &'a Value {
    let t = analyzer_support::assert_top(report, id);
    assert!(t["count"].as_u64().unwrap() > 0);
    t
}

#[test]
fn refused_is_rst_to_syn() {
    let r = analyze(
        "refused",
        Client::Loadgen(&["--http1", "--rate", "20", "--duration", "500ms"]),
    );
    let t = assert_top(&r, "connect_refused");
    assert_eq!(t["count"], 10, "{t:#}");
    assert!(
        text(t).contains("SYN_SENT"),
        "evidence names the state: {t:#}"
    );
}

#[test]
fn rst_is_a_server_abort_in_established() {
    let r = analyze(
        "rst",
        Client::Loadgen(&["--http1", "--rate", "20", "--duration", "500ms"]),
    );
    let t = assert_top(&r, "server_abort_mid_request");
    assert_eq!(t["count"], 10, "{t:#}");
    assert!(text(t).contains("ESTABLISHED"), "{t:#}");
}

#[test]
fn rst_answering_the_next_request_is_a_server_abort_not_an_idle_race() {
    // The server answers one request, then resets the connection when the next request
    // arrives: the RST follows the write on a connection idle well under the threshold,
    // so the server aborted mid-request; nothing proves a race with an idle close.
    let r = analyze(
        "rst:after=1",
        Client::Loadgen(&[
            "--http1",
            "--connections",
            "1",
            "--rate",
            "20",
            "--duration",
            "500ms",
        ]),
    );
    let t = assert_top(&r, "server_abort_mid_request");
    assert!(
        text(t).contains("after the request was written"),
        "the RST follows the write: {t:#}"
    );
    let causes = r["causes"].as_array().unwrap();
    assert!(
        causes.iter().all(|c| c["id"] != "idle_race"),
        "no idle race claimed: {r:#}"
    );
}

#[test]
fn backlog_full_is_listen_overflow_with_syn_retransmits() {
    let r = analyze(
        "backlog-full",
        Client::Loadgen(&[
            "--http1",
            "--connect-timeout",
            "2500ms",
            "--rate",
            "10",
            "--duration",
            "300ms",
        ]),
    );
    let t = assert_top(&r, "listen_overflow_or_syn_drop");
    let s = text(t);
    assert!(s.contains("retransmit"), "{t:#}");
}

#[test]
fn wrong_cert_names_the_sni_and_the_presented_names() {
    let r = analyze(
        "wrong-cert",
        Client::Loadgen(&["--http2", "--rate", "10", "--duration", "300ms"]),
    );
    let t = assert_top(&r, "tls_cert_mismatch");
    let s = text(t);
    assert!(s.contains("faultline.test") || s.contains("sni"), "{t:#}");
}

#[test]
fn goaway_on_concurrency_is_enhance_your_calm_with_streams_in_flight() {
    let r = analyze(
        "goaway-on-concurrency:2",
        Client::Loadgen(&[
            "--http2",
            "--users",
            "5",
            "--connections",
            "1",
            "--duration",
            "500ms",
        ]),
    );
    let t = top(&r);
    assert!(t["id"].as_str().unwrap().starts_with("h2_goaway"), "{r:#}");
    assert!(text(t).contains("ENHANCE_YOUR_CALM"), "{t:#}");
}

#[test]
fn fin_mid_response_is_peer_fin_with_a_request_outstanding() {
    let r = analyze(
        "fin-mid-response",
        Client::Loadgen(&["--http1", "--rate", "10", "--duration", "300ms"]),
    );
    assert_top(&r, "peer_fin_outstanding");
}

#[test]
fn stall_is_a_slow_server_timeout_without_retransmits() {
    let r = analyze(
        "stall",
        Client::Loadgen(&[
            "--http1",
            "--timeout",
            "300ms",
            "--rate",
            "10",
            "--duration",
            "300ms",
        ]),
    );
    assert_top(&r, "timeout_slow_server");
}

#[test]
fn rst_stream_is_reported_by_code() {
    let r = analyze(
        "rst-stream:refused_stream",
        Client::Loadgen(&["--http2", "--rate", "10", "--duration", "300ms"]),
    );
    let t = top(&r);
    assert!(
        t["id"].as_str().unwrap().starts_with("h2_rst_stream"),
        "{r:#}"
    );
    assert!(text(t).contains("REFUSED_STREAM"), "{t:#}");
}

#[test]
fn foreign_client_refused_from_kernel_evidence_alone() {
    let r = analyze("refused", Client::Curl(&[], 3));
    let t = assert_top(&r, "connect_refused");
    assert_eq!(t["count"], 3, "{t:#}");
}

#[test]
fn foreign_client_server_abort_from_kernel_evidence_alone() {
    let r = analyze("rst", Client::Curl(&[], 3));
    assert_top(&r, "server_abort_mid_request");
}

#[test]
fn foreign_client_backlog_full_from_kernel_evidence_alone() {
    let r = analyze(
        "backlog-full",
        Client::Curl(&["--connect-timeout", "2.5"], 2),
    );
    assert_top(&r, "listen_overflow_or_syn_drop");
}

#[test]
fn status_untrusted_and_expired_certs_each_get_their_cause() {
    for (fault, flags, id) in [
        ("status:503", &["--http1"][..], "http_status"),
        ("untrusted-cert", &["--http2"][..], "tls_cert_untrusted"),
        ("expired-cert", &["--http2"][..], "tls_cert_expired"),
    ] {
        let mut argv = flags.to_vec();
        argv.extend(["--rate", "10", "--duration", "300ms"]);
        let r = analyze(fault, Client::Loadgen(&argv));
        let t = assert_top(&r, id);
        assert_eq!(t["count"], 3, "{fault}: {t:#}");
    }
}

#[test]
fn graceful_goaway_costs_nothing_and_rst_mid_response_is_an_abort() {
    // A graceful GOAWAY (NO_ERROR) after two streams: the streams it covers finish, later
    // requests go to a new connection; nothing failed, and the report invents nothing.
    let r = analyze(
        "goaway:no_error:after=2",
        Client::Loadgen(&[
            "--http2",
            "--connections",
            "1",
            "--rate",
            "20",
            "--duration",
            "500ms",
        ]),
    );
    // (Tests run in parallel: a stray kernel-only connection of another test to a
    // recycled port may show up; loadgen's requests and the GOAWAY must not.)
    assert_eq!(r["totals"]["requests"], 10, "{r:#}");
    assert_eq!(r["totals"]["requests_failed"], 0, "{r:#}");
    assert!(
        !r["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["loadgen_failures"].as_u64() != Some(0)
                || c["id"].as_str().is_some_and(|id| id.starts_with("h2_"))),
        "{r:#}"
    );
    let r = analyze(
        "rst-mid-response",
        Client::Loadgen(&["--http1", "--rate", "10", "--duration", "300ms"]),
    );
    let t = assert_top(&r, "server_abort_mid_request");
    assert!(text(t).contains("RST"), "{t:#}");
}

/// The raw backend (AF_PACKET capture, no eBPF) reaches the TCP-level verdicts the eBPF
/// backend reaches in the tests above, for loadgen and for a foreign client.
#[test]
fn raw_backend_gives_the_ebpf_verdicts_for_tcp_faults() {
    let h1: &[&str] = &["--http1", "--rate", "20", "--duration", "500ms"];
    let cases: [(&str, Client<'_>, &str); 8] = [
        ("refused", Client::Loadgen(h1), "connect_refused"),
        ("rst", Client::Loadgen(h1), "server_abort_mid_request"),
        (
            "backlog-full",
            Client::Loadgen(&[
                "--http1",
                "--connect-timeout",
                "2500ms",
                "--rate",
                "10",
                "--duration",
                "300ms",
            ]),
            "listen_overflow_or_syn_drop",
        ),
        (
            "fin-mid-response",
            Client::Loadgen(&["--http1", "--rate", "10", "--duration", "300ms"]),
            "peer_fin_outstanding",
        ),
        (
            "stall",
            Client::Loadgen(&[
                "--http1",
                "--timeout",
                "300ms",
                "--rate",
                "10",
                "--duration",
                "300ms",
            ]),
            "timeout_slow_server",
        ),
        ("refused", Client::Curl(&[], 3), "connect_refused"),
        ("rst", Client::Curl(&[], 3), "server_abort_mid_request"),
        (
            "backlog-full",
            Client::Curl(&["--connect-timeout", "2.5"], 2),
            "listen_overflow_or_syn_drop",
        ),
    ];
    for (fault, client, want) in cases {
        let r = analyze_on(Backend::Raw, fault, client, true);
        assert_eq!(r["run"]["backend"], "raw", "{r:#}");
        let t = assert_top(&r, want);
        let ev = t["examples"][0]["evidence"].to_string();
        assert!(
            !ev.contains("\"source\":\"kernel\""),
            "raw evidence is labelled wire: {ev}"
        );
        let cap = &r["run"]["capture"];
        assert!(
            cap["interfaces"][0]["packets"].as_u64().unwrap() > 0,
            "{cap:#}"
        );
        assert_eq!(cap["interfaces"][0]["drops"], 0, "capture drops: {cap:#}");
    }
}

/// TLS 1.2 sends the certificate in plaintext: the raw backend names the mismatch from
/// the wire alone (curl, no loadgen events).
#[test]
fn raw_backend_reads_a_tls12_certificate_mismatch_from_the_wire() {
    let r = analyze_on(
        Backend::Raw,
        "wrong-cert",
        Client::CurlTls(&["--tlsv1.2", "--tls-max", "1.2"], 2),
        false,
    );
    let t = assert_top(&r, "tls_cert_mismatch");
    let s = text(t);
    assert!(s.contains("ClientHello SNI"), "{t:#}");
    assert!(s.contains("\"source\":\"wire\""), "{t:#}");
}

/// h2c frames on the wire: GOAWAY and RST_STREAM codes without loadgen's events.
#[test]
fn raw_backend_reads_h2c_goaway_and_rst_stream_codes_from_the_wire() {
    let r = analyze_on(
        Backend::Raw,
        "goaway-on-concurrency:2",
        Client::LoadgenH2c(&["--users", "5", "--connections", "1", "--duration", "500ms"]),
        false,
    );
    let t = assert_top(&r, "h2_goaway_enhance_your_calm");
    assert!(text(t).contains("GOAWAY ENHANCE_YOUR_CALM"), "{t:#}");
    let r = analyze_on(
        Backend::Raw,
        "rst-stream:refused_stream",
        Client::LoadgenH2c(&["--rate", "10", "--duration", "300ms"]),
        false,
    );
    let t = assert_top(&r, "h2_rst_stream");
    assert!(text(t).contains("REFUSED_STREAM"), "{t:#}");
}

/// Reads until the peer resets the connection (bounded by the read timeout).
fn read_until_reset(c: &mut std::net::TcpStream) -> std::io::Error {
    use std::io::Read;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..1000 {
        match c.read(&mut buf) {
            Ok(0) => panic!("EOF where an RST was expected"),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
    panic!("the connection kept delivering data");
}

/// A loopback connection to `listener` (client, server side) after three exchanges of
/// data both ways.
fn busy_pair(listener: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4];
    for _ in 0..3 {
        c.write_all(b"ping").unwrap();
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    (c, s)
}

/// Two loopback connections to one server, each exchanging data both ways first: the
/// server resets the first itself (SO_LINGER 0), and `loadgen packets inject` forges an
/// RST into the second. Returns the analyzer's report (every connection listed) and the
/// client ports of the genuine and the forged reset.
fn genuine_and_injected_rsts(backend: Backend) -> (Report, u16, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let session = Session::on_port(server.port(), backend);
    // Both connections exchange data both ways first, so each end's TTL and IP IDs are known.
    let (mut genuine, s1) = busy_pair(&listener);
    socket2::SockRef::from(&s1)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s1);
    let e = read_until_reset(&mut genuine);
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");

    let (mut victim, _s2) = busy_pair(&listener);
    let m = format!("{}-{server}", victim.local_addr().unwrap());
    let argv = [
        "loadgen",
        "packets",
        "inject",
        "--rst",
        "--match",
        &m,
        "--direction",
        "to-client",
    ];
    let LgCommand::Packets(p) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let injector = std::thread::spawn(move || loadgen::app::packets(&p));
    let e = read_until_reset(&mut victim);
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    let code = injector.join().unwrap().expect("inject ran");
    assert_eq!(code, std::process::ExitCode::SUCCESS);

    let (_, report) = session.stop_drained();
    let genuine_port = genuine.local_addr().unwrap().port();
    let victim_port = victim.local_addr().unwrap().port();
    (report, genuine_port, victim_port)
}

/// The client-side record of `port` in a report listing every connection.
fn client_conn(r: &Value, port: u16) -> Value {
    r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["role"] == "client"
                && c["local"]
                    .as_str()
                    .is_some_and(|l| l.ends_with(&format!(":{port}")))
        })
        .unwrap_or_else(|| panic!("no record of client port {port}: {r:#}"))
        .clone()
}

/// The report's cause `id`, which must be there.
fn cause<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} cause: {r:#}"))
}

/// An RST forged by `loadgen packets inject` (TTL 128, random IP ID) is flagged as
/// possibly injected; the server's own RST on a connection beside it (SO_LINGER 0, the
/// stack's TTL 64) is not.
#[test]
fn raw_backend_flags_an_injected_rst_and_not_the_servers_own() {
    let (report, genuine_port, victim_port) = genuine_and_injected_rsts(Backend::Raw);
    let r = serde_json::to_value(&report).unwrap();
    let txt = report.render(analyzer::offline::Format::Text);
    assert!(txt.contains("backend raw (AF_PACKET on lo)"), "{txt}");
    assert!(
        report
            .render(analyzer::offline::Format::Markdown)
            .contains("backend raw"),
        "markdown names the backend"
    );
    let injected = cause(&r, "rst_possibly_injected");
    assert_eq!(injected["count"], 1, "{injected:#}");
    assert!(text(injected).contains("TTL 128"), "{injected:#}");
    assert_eq!(
        client_conn(&r, victim_port)["cause"],
        "rst_possibly_injected"
    );
    let g = client_conn(&r, genuine_port);
    assert_eq!(g["cause"], "server_abort_mid_request", "{g:#}");
    assert!(
        !text(&g).contains("rst_suspect"),
        "the server's own RST was flagged: {g:#}"
    );
}

/// The eBPF backend tells the same two resets apart without seeing a packet: the server
/// is on this host, and tcp_send_reset recorded its socket's RST but none for the forged
/// one.
#[test]
fn ebpf_flags_an_rst_no_local_socket_sent_and_not_the_servers_own() {
    let (report, genuine_port, victim_port) = genuine_and_injected_rsts(Backend::Ebpf);
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["run"]["backend"], "ebpf");
    let injected = cause(&r, "rst_possibly_injected");
    assert_eq!(injected["count"], 1, "{injected:#}");
    assert!(
        text(injected).contains("recorded no RST from it"),
        "{injected:#}"
    );
    let v = client_conn(&r, victim_port);
    assert_eq!(v["cause"], "rst_possibly_injected", "{v:#}");
    assert_eq!(v["facts"]["rst_peer_traced"], true, "{v:#}");
    let g = client_conn(&r, genuine_port);
    assert_eq!(g["cause"], "server_abort_mid_request", "{g:#}");
}

/// A firewall rule answers the client's next segment on a busy connection with a forged
/// RST (`reject with tcp reset` on the output hook: the server never sees the segment).
/// The eBPF backend names it possibly injected: not a server abort, not an idle race.
#[test]
fn ebpf_names_a_firewall_reset_on_a_busy_connection_possibly_injected() {
    use std::io::Write;
    use testbed::nft::{Hook, NftTable};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let session = Session::on_port(server.port(), Backend::Ebpf);
    let (mut c, s) = busy_pair(&listener);
    let port = c.local_addr().unwrap().port();
    let fw = NftTable::new(
        Hook::Output,
        &format!(
            "ip saddr 127.0.0.1 tcp sport {port} tcp dport {} reject with tcp reset",
            server.port()
        ),
    );
    // The forged RST comes back over loopback at once: it may already reach the socket
    // inside the write (ECONNRESET from the write), else the next read returns it.
    let e = match c.write_all(b"ping") {
        Err(e) => e,
        Ok(()) => read_until_reset(&mut c),
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    drop(fw);
    let (_, report) = session.stop_drained();
    let r = serde_json::to_value(&report).unwrap();
    let v = client_conn(&r, port);
    assert_eq!(v["cause"], "rst_possibly_injected", "{v:#}");
    let ids: Vec<&Value> = r["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert!(
        !ids.iter()
            .any(|id| *id == "idle_race" || *id == "server_abort_mid_request"),
        "{r:#}"
    );
    drop(s);
}

/// A loopback HTTP/1.1 server that reads one request per connection, then either closes
/// at once (`hold` zero: an empty reply) or holds the connection `hold` before closing,
/// answering nothing. Serves `conns` connections, then ends.
fn silent_server(
    conns: usize,
    hold: Duration,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..conns {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            std::thread::sleep(hold);
        }
    });
    (addr, t)
}

/// curl (a foreign client: no loadgen events) gets an empty reply three times; the
/// kernel's TCP counters alone name it.
#[test]
fn foreign_client_empty_reply_from_tcp_counters() {
    let (addr, server) = silent_server(3, Duration::ZERO);
    let session = Session::on_port(addr.port(), Backend::Ebpf);
    let url = format!("http://{addr}/");
    run_failing_curl("empty reply", &[url], 3);
    server.join().unwrap();
    let (_, report) = session.stop_drained();
    let r = serde_json::to_value(&report).unwrap();
    let t = assert_top(&r, "empty_reply");
    assert_eq!(t["count"], 3, "{t:#}");
    assert!(text(t).contains("nothing received"), "{t:#}");
}

/// curl gives up (`--max-time 1`) on a server that takes the request and never
/// answers: the kernel's counters show the request acknowledged and nothing back.
#[test]
fn foreign_client_gives_up_on_a_silent_server() {
    let (addr, server) = silent_server(2, Duration::from_secs(2));
    let session = Session::on_port(addr.port(), Backend::Ebpf);
    let url = format!("http://{addr}/");
    for _ in 0..2 {
        let st = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "1", &url])
            .status()
            .expect("curl runs");
        assert_eq!(st.code(), Some(28), "curl timed out");
    }
    server.join().unwrap();
    let (_, report) = session.stop_drained();
    let r = serde_json::to_value(&report).unwrap();
    let t = assert_top(&r, "no_answer_client_gave_up");
    assert_eq!(t["count"], 2, "{t:#}");
    assert!(text(t).contains("acknowledged by the server"), "{t:#}");
}
