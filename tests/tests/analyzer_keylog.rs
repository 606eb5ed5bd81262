//! Privileged end-to-end tests of `analyzer attach --backend raw --keylog FILE`: clients
//! that export their TLS secrets (loadgen `--keylog`, curl with `SSLKEYLOGFILE`) against
//! testbed faults over HTTPS, the analyzer in this process on the raw backend with the
//! key log, no loadgen events joined (every client is foreign to it). With the keys the
//! HTTP/2 GOAWAY, RST_STREAM and statuses inside TLS are named per request, as for
//! cleartext; the same run without the key log names none of them. Needs root.
mod analyzer_support;

use std::{path::PathBuf, process::Command};

use analyzer::{
    attach::{AttachOptions, Backend},
    recording::FilterConfig,
    session::{self, SessionOptions},
};
use analyzer_support::Session;
use clap::Parser;
use loadgen::cli::{Cli, Command as LgCommand};
use serde_json::Value;
use testbed::{Config, Testbed};

/// The raw backend on `port`, every connection listed, decrypting with `keylog` when
/// given.
fn raw_session(port: u16, keylog: Option<PathBuf>) -> Session {
    Session::start(SessionOptions {
        attach: AttachOptions {
            filter: FilterConfig {
                ports: vec![port],
                ..FilterConfig::default()
            },
            backend: Backend::Raw,
            keylog,
            ..AttachOptions::default()
        },
        all: true,
        ..SessionOptions::default()
    })
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-keylog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An empty key log file (it must exist when the analyzer starts).
fn empty_keylog(name: &str) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, "").unwrap();
    p
}

/// Who drives the load.
#[derive(Clone, Copy)]
enum Client<'a> {
    /// loadgen (in this process) with these flags; URL, CA and `--keylog` added here.
    Loadgen(&'a [&'a str]),
    /// curl with `flags`, `runs` times, each run asking for the URL `urls` times (on one
    /// connection); URL and CA added here, the key log through `SSLKEYLOGFILE`.
    Curl {
        flags: &'a [&'a str],
        runs: usize,
        urls: usize,
    },
}

/// Runs `client` against the testbed's `fault` listener beside the raw backend, with the
/// key log (`with_keylog`) or without; returns the report and the key log's stats.
fn analyze(fault: &str, client: Client<'_>, with_keylog: bool) -> (Value, Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let who = match client {
        Client::Loadgen(_) => "loadgen",
        Client::Curl { .. } => "curl",
    };
    let stem: String = format!("{who}-{fault}-{with_keylog}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // The client always writes its keys; the analyzer reads them only when asked.
    let keys = empty_keylog(&format!("{stem}.keys.log"));
    let session = raw_session(addr.port(), with_keylog.then(|| keys.clone()));
    let name = tb.server_name().to_owned();
    let url = format!("https://{name}:{}/", addr.port());
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let ca = tb.ca_path().to_str().unwrap().to_owned();
    match client {
        Client::Loadgen(flags) => {
            let events = tmp(&format!("{stem}.events.ndjson"));
            let mut argv = vec![
                "loadgen",
                "attack",
                &url,
                "--events",
                events.to_str().unwrap(),
                "--quiet",
                "--resolve",
                &resolve,
                "--cacert",
                &ca,
                "--keylog",
                keys.to_str().unwrap(),
            ];
            argv.extend_from_slice(flags);
            let LgCommand::Attack(a) = Cli::try_parse_from(argv).unwrap().command else {
                unreachable!()
            };
            let cfg = loadgen::cli::to_config(&a).unwrap();
            rt.block_on(loadgen::run::run(cfg, Value::Null, false))
                .unwrap();
        }
        Client::Curl { flags, runs, urls } => {
            for _ in 0..runs {
                let st = Command::new("curl")
                    .env("SSLKEYLOGFILE", &keys)
                    .args(["-s", "--max-time", "5"])
                    .args(["--resolve", &resolve, "--cacert", &ca])
                    .args(flags)
                    .args((0..urls).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
                    .status()
                    .expect("curl runs");
                assert!(st.code().is_some(), "curl ran to its end");
            }
        }
    }
    let (outcome, report) = session.finish();
    rt.block_on(tb.shutdown());
    assert!(
        std::fs::metadata(&keys).unwrap().len() > 0,
        "the client wrote its keys to {}",
        keys.display()
    );
    std::fs::write(
        tmp(&format!("{stem}.report.json")),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    let stats = serde_json::to_value(outcome.capture.as_ref().map(|c| &c.keylog)).unwrap();
    (report, stats)
}

fn causes(r: &Value) -> &Vec<Value> {
    r["causes"].as_array().expect("causes")
}

/// The top cause, which must be `id`.
fn assert_top<'a>(r: &'a Value, id: &str) -> &'a Value {
    let c = causes(r);
    assert!(!c.is_empty(), "no causes: {r:#}");
    assert_eq!(c[0]["id"], id, "top cause; report: {r:#}");
    &c[0]
}

/// The key log decrypted every connection it was given, and no record failed.
fn assert_decrypted(stats: &Value, connections: u64) {
    assert_eq!(stats["connections_decrypted"], connections, "{stats:#}");
    assert_eq!(stats["records_failed_auth"], 0, "{stats:#}");
    assert_eq!(stats["connections_no_key"], 0, "{stats:#}");
    assert_eq!(stats["malformed_lines"], 0, "{stats:#}");
}

/// No cause read from inside HTTP/2 or from HTTP statuses: what only the plaintext shows.
fn assert_no_plaintext_cause(r: &Value) {
    for c in causes(r) {
        let id = c["id"].as_str().unwrap();
        assert!(
            !id.starts_with("h2_") && id != "http_status",
            "without the key log, {id} cannot be known: {r:#}"
        );
    }
}

const LOADGEN_H2: &[&str] = &["--http2", "--rate", "10", "--duration", "300ms"];

/// loadgen over h2+TLS, the server's GOAWAY ENHANCE_YOUR_CALM before any stream: named
/// on each request with the key log; without it, the raw backend sees only records.
#[test]
fn loadgen_h2_goaway_enhance_your_calm_is_named_through_the_keylog() {
    let fault = "goaway:ENHANCE_YOUR_CALM:after=0";
    let (r, stats) = analyze(fault, Client::Loadgen(LOADGEN_H2), true);
    let t = assert_top(&r, "h2_goaway_enhance_your_calm");
    assert_eq!(t["count"], 3, "one per request: {t:#}");
    assert!(t.to_string().contains("ENHANCE_YOUR_CALM"), "{t:#}");
    assert_decrypted(&stats, 3);
    let (r, stats) = analyze(fault, Client::Loadgen(LOADGEN_H2), false);
    assert_no_plaintext_cause(&r);
    assert_eq!(stats, Value::Null, "no key log, no stats");
}

/// loadgen over h2+TLS, every stream reset INTERNAL_ERROR: one failure per request.
#[test]
fn loadgen_h2_rst_stream_is_counted_per_request_through_the_keylog() {
    let fault = "rst-stream:INTERNAL_ERROR";
    let (r, stats) = analyze(fault, Client::Loadgen(LOADGEN_H2), true);
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
    assert!(
        stats["connections_decrypted"].as_u64().unwrap() >= 1,
        "{stats:#}"
    );
    assert_eq!(stats["records_failed_auth"], 0, "{stats:#}");
    let (r, _) = analyze(fault, Client::Loadgen(LOADGEN_H2), false);
    assert_no_plaintext_cause(&r);
}

/// loadgen over h2+TLS, every answer 503: the status read through HPACK, per request.
#[test]
fn loadgen_h2_status_503_is_counted_per_request_through_the_keylog() {
    let fault = "status:503";
    let (r, stats) = analyze(fault, Client::Loadgen(LOADGEN_H2), true);
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
    assert!(
        stats["connections_decrypted"].as_u64().unwrap() >= 1,
        "{stats:#}"
    );
    let (r, _) = analyze(fault, Client::Loadgen(LOADGEN_H2), false);
    assert_no_plaintext_cause(&r);
}

/// curl over TLS 1.3 and h2 (OpenSSL writes SSLKEYLOGFILE), each stream reset.
#[test]
fn curl_tls13_h2_rst_stream_is_named_through_sslkeylogfile() {
    let fault = "rst-stream:INTERNAL_ERROR";
    let curl = Client::Curl {
        flags: &["--http2", "--tlsv1.3"],
        runs: 2,
        urls: 1,
    };
    let (r, stats) = analyze(fault, curl, true);
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
    assert_decrypted(&stats, 2);
    let (r, _) = analyze(fault, curl, false);
    assert_no_plaintext_cause(&r);
}

/// curl over TLS 1.2 and HTTP/1.1, three requests on one connection answered 503: three
/// failures, from the TLS 1.2 key block (CLIENT_RANDOM's master secret).
#[test]
fn curl_tls12_http1_statuses_are_counted_through_sslkeylogfile() {
    let fault = "status:503";
    let curl = Client::Curl {
        flags: &["--http1.1", "--tls-max", "1.2"],
        runs: 1,
        urls: 3,
    };
    let (r, stats) = analyze(fault, curl, true);
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
    assert_decrypted(&stats, 1);
    let (r, _) = analyze(fault, curl, false);
    assert_no_plaintext_cause(&r);
}

/// A key log that is not there is an error naming it, before anything is captured.
#[test]
fn a_missing_keylog_is_an_error_naming_it() {
    let missing = tmp("no-such-keylog.log");
    let opts = SessionOptions {
        attach: AttachOptions {
            backend: Backend::Raw,
            keylog: Some(missing),
            ..AttachOptions::default()
        },
        ..SessionOptions::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(session::run(&opts, async {}))
        .expect_err("no key log, no session");
    assert!(format!("{e:#}").contains("no-such-keylog.log"), "{e:#}");
    let opts = SessionOptions {
        attach: AttachOptions {
            backend: Backend::Ebpf,
            keylog: Some(empty_keylog("ebpf.keys.log")),
            ..AttachOptions::default()
        },
        ..SessionOptions::default()
    };
    let e = rt
        .block_on(session::run(&opts, async {}))
        .expect_err("--keylog is the raw backend's");
    assert!(format!("{e:#}").contains("--backend raw"), "{e:#}");
}

/// Ten answers of 512 KiB on one h2 connection (5 MB, past the 256 KiB cleartext
/// inspection stops at): with the key log it is read to its end, every request answered,
/// the tally complete, no failure.
#[test]
fn a_connection_of_megabytes_is_read_to_its_end() {
    let flags = &[
        "--http2",
        "--connections",
        "1",
        "--rate",
        "20",
        "--duration",
        "500ms",
    ];
    let (r, stats) = analyze("ok:size=524288", Client::Loadgen(flags), true);
    assert!(causes(&r).is_empty(), "{r:#}");
    let conns = r["connections"].as_array().expect("connections");
    let tallies: Vec<&Value> = conns
        .iter()
        .map(|c| &c["http"])
        .filter(|h| !h.is_null())
        .collect();
    assert_eq!(tallies.len(), 1, "one connection: {r:#}");
    let t = tallies[0];
    assert_eq!(t["protocol"], "h2", "{t:#}");
    assert_eq!(
        (&t["requests"], &t["answered"]),
        (&Value::from(10), &Value::from(10)),
        "{t:#}"
    );
    assert_eq!(t["incomplete"], false, "{t:#}");
    assert!(
        stats["plaintext_bytes"].as_u64().unwrap() > 5 << 20,
        "{stats:#}"
    );
    assert_decrypted(&stats, 1);
}
