//! Privileged end-to-end tests of the certificate probe: curl (a foreign client, no
//! loadgen events) over TLS 1.3 against testbed certificate faults, with the eBPF
//! backend. curl's own bytes show only that it gave the handshake up: OpenSSL refuses an
//! unknown CA or an expired certificate with a plaintext alert (before its keys change),
//! and curl 7.x checks the name only after the handshake, then sends an encrypted alert
//! (close_notify) and closes without a request. The analyzer's own handshake after the
//! run names the certificate's fault, once per server and SNI, and says it looked. With
//! the probe off the cause says no more than the wire does; a clean run makes no probe.
//! Needs root.
mod analyzer_support;

use analyzer::{attach::Backend, tls_probe::ProbeOptions};
use analyzer_support::{Session, assert_top, causes, curl, text};
use clap::Parser;
use loadgen::cli::{Cli as LgCli, Command as LgCommand};
use serde_json::Value;
use testbed::{Config, Testbed};

/// curl runs per fault: two failures, one probe.
const RUNS: usize = 2;

/// Starts the testbed with `fault`, records its port with the eBPF backend and `probe`,
/// runs curl over TLS 1.3 `RUNS` times (the testbed's name, and its CA as the one curl
/// trusts), and returns the report with the SNI curl sent. `ok`: whether curl must
/// succeed.
fn curl_tls13(fault: &str, probe: ProbeOptions, ok: bool) -> (Value, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let name = tb.server_name().to_owned();
    let session = Session::on_port_with_probe(addr.port(), Backend::Ebpf, probe.clone());
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{name}:{}/", addr.port());
    let ca = tb.ca_path().to_str().unwrap().to_owned();
    for _ in 0..RUNS {
        let code = curl(&["--tlsv1.3", "--resolve", &resolve, "--cacert", &ca, &url]);
        if ok {
            assert_eq!(code, Some(0), "curl against {fault}");
        } else {
            assert_ne!(code, Some(0), "curl against {fault} must fail");
        }
    }
    // The probe runs as the session finishes: the testbed must still be serving.
    let (outcome, report) = session.finish();
    rt.block_on(tb.shutdown());
    let p = outcome
        .plaintext
        .expect("the eBPF backend reads the client's bytes");
    assert!(p.calls > 0, "no call captured: {outcome:?}");
    // Kept for a look after a failure.
    let dir = std::env::temp_dir().join(format!("faultline-tls-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let probing = if probe.enabled { "probe" } else { "no-probe" };
    let file = dir.join(format!("{fault}-{probing}.report.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    (report, name)
}

fn probes(r: &Value) -> &Vec<Value> {
    r["probes"].as_array().expect("the report lists its probes")
}

/// The one probe of the run, which judged every failed connection.
fn the_probe<'a>(r: &'a Value, verdict: &str) -> &'a Value {
    let p = probes(r);
    assert_eq!(p.len(), 1, "one probe per server and SNI: {r:#}");
    assert_eq!(p[0]["connections"], RUNS, "{:#}", p[0]);
    let judged = &p[0]["outcome"]["presented"]["judgment"];
    assert_eq!(judged["verdict"]["kind"], verdict, "{:#}", p[0]);
    &p[0]
}

/// The cause's example evidence from the probe (source `probe`).
fn probe_evidence(cause: &Value) -> String {
    let evidence = cause["examples"][0]["evidence"]
        .as_array()
        .expect("evidence");
    let probed: Vec<&Value> = evidence.iter().filter(|e| e["source"] == "probe").collect();
    assert_eq!(probed.len(), 1, "{cause:#}");
    probed[0]["what"].as_str().unwrap().to_owned()
}

/// The default certificate (`default.invalid`): curl refuses it by name, the probe names
/// the SNI and what the server presents instead.
#[test]
fn a_default_certificate_curl_refuses_is_a_mismatch_by_the_probe() {
    let (r, sni) = curl_tls13("wrong-cert", ProbeOptions::default(), false);
    let t = assert_top(&r, "tls_cert_mismatch");
    assert_eq!(t["count"], RUNS, "{t:#}");
    assert_eq!(t["confidence"]["level"], "medium", "{t:#}");
    let s = text(t);
    assert!(
        s.contains(&format!("ClientHello SNI {sni}; the client completed the handshake, then sent an encrypted alert")),
        "{t:#}"
    );
    let what = probe_evidence(t);
    assert!(
        what.contains(&format!(
            "with SNI {sni} was presented a certificate for [default.invalid]"
        )),
        "{what}"
    );
    assert!(
        what.contains("issued by \"CN=faultline testbed CA\""),
        "{what}"
    );
    the_probe(&r, "mismatch");
}

/// `--no-probe`: curl 7.88 checks the certificate's name only after the handshake, then
/// closes with an alert-sized record, which is also how any client closes a pooled
/// connection it never used. Without the probe's finding that tells them apart, nothing
/// is named (a wrong cause costs more than none); the connections stay in the report.
#[test]
fn without_the_probe_a_close_after_the_handshake_is_not_named() {
    let off = ProbeOptions {
        enabled: false,
        ..ProbeOptions::default()
    };
    let (r, _sni) = curl_tls13("wrong-cert", off, false);
    assert!(causes(&r).is_empty(), "{r:#}");
    assert!(probes(&r).is_empty(), "{r:#}");
    let kept = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "client")
        .filter(|c| text(&c["wire"]).contains("tls_encrypted_alert"))
        .count();
    assert_eq!(kept, RUNS, "{r:#}");
}

/// A certificate from a CA that is nowhere (neither curl's --cacert nor the system's
/// roots, which the probe judges against), and an expired one.
#[test]
fn untrusted_and_expired_certificates_curl_refuses_get_their_causes_by_the_probe() {
    for (fault, cause, verdict) in [
        ("untrusted-cert", "tls_cert_untrusted", "untrusted"),
        ("expired-cert", "tls_cert_expired", "expired"),
    ] {
        let (r, sni) = curl_tls13(fault, ProbeOptions::default(), false);
        let t = assert_top(&r, cause);
        assert_eq!(t["count"], RUNS, "{t:#}");
        let what = probe_evidence(t);
        assert!(
            what.contains(&format!("was presented a certificate for [{sni}")),
            "{what}"
        );
        the_probe(&r, verdict);
    }
}

/// loadgen as a foreign client (its events not joined), read from the wire by the raw
/// backend: rustls refuses the default certificate with an alert encrypted under the
/// handshake keys, in place of its Finished; the probe names the mismatch. (tokio-rustls
/// writes the ChangeCipherSpec and the alert with one writev, whose second buffer the
/// eBPF backend's syscall capture does not read.)
#[test]
fn a_rustls_client_refusing_with_an_encrypted_alert_is_named_by_the_probe() {
    let fault = "wrong-cert";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let name = tb.server_name().to_owned();
    let session = Session::on_port_with_probe(addr.port(), Backend::Raw, ProbeOptions::default());
    let events =
        std::env::temp_dir().join(format!("faultline-tls-probe-{}.ndjson", std::process::id()));
    let url = format!("https://{name}:{}/", addr.port());
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let argv = [
        "loadgen",
        "attack",
        &url,
        "--events",
        events.to_str().unwrap(),
        "--quiet",
        "--resolve",
        &resolve,
        "--cacert",
        tb.ca_path().to_str().unwrap(),
        "--http2",
        "--rate",
        "10",
        "--duration",
        "300ms",
    ];
    let LgCommand::Attack(a) = LgCli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let cfg = loadgen::cli::to_config(&a).unwrap();
    rt.block_on(loadgen::run::run(cfg, Value::Null, false))
        .unwrap();
    let (_, r) = session.finish();
    rt.block_on(tb.shutdown());
    let t = assert_top(&r, "tls_cert_mismatch");
    assert!(
        text(t).contains(&format!("ClientHello SNI {name}; the client sent an encrypted alert (19-byte record) right after the server's first flight")),
        "{t:#}"
    );
    assert!(probe_evidence(t).contains("[default.invalid]"), "{t:#}");
    let p = probes(&r);
    assert_eq!(p.len(), 1, "{r:#}");
    assert_eq!(p[0]["connections"], t["count"], "{r:#}");
}

/// Handshakes that complete and requests answered: no failure, no probe.
#[test]
fn a_clean_tls_run_makes_no_probe() {
    let (r, _) = curl_tls13("ok", ProbeOptions::default(), true);
    assert!(causes(&r).is_empty(), "{r:#}");
    assert_eq!(r["totals"]["failures"], 0, "{:#}", r["totals"]);
    assert!(probes(&r).is_empty(), "{r:#}");
}
