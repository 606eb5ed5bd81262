//! Rules from what the connection's bytes showed (the raw backend's capture of the wire,
//! or the eBPF backend's capture of the client's own reads and writes), for failures no
//! loadgen event
//! explains (a foreign client): a TLS 1.2 certificate not valid for the SNI, a fatal
//! plaintext TLS alert, a TLS handshake the client gave up with an encrypted alert
//! (judged by the certificate probe's handshake when one was made, `tls_probe`), an h2c
//! GOAWAY or RST_STREAM by code, and an RST whose IP header does not fit the peer's other
//! packets (possibly injected by a middlebox).
use super::{Case, Confidence, Evidence, Level, Verdict, kernel_summary};
use crate::{event::wire_fact::WireFact, table::ConnRecord};

mod probed;
#[cfg(test)]
mod tests;

use probed::{Probed, probe_verdict, rejected_by_client};

fn wire_facts<'a>(case: &Case<'a>) -> Option<(&'a ConnRecord, &'a [WireFact])> {
    if !case.kernel_decides() {
        return None;
    }
    let k = case.kernel?;
    (!k.wire.is_empty()).then_some((k, k.wire.as_slice()))
}

fn at(k: &ConnRecord) -> u64 {
    k.facts.established_unix_ns.unwrap_or(k.first_unix_ns)
}

/// A TLS failure seen on the wire: the certificate presented does not name the SNI
/// (`tls_cert_mismatch`); or the client gave the handshake up and the certificate probe
/// found what it likely refused (`tls_cert_mismatch`, `tls_cert_expired`,
/// `tls_cert_untrusted`, medium confidence); or a fatal alert ended the handshake
/// (`tls_alert`, detail: the alert's name); or the client gave the handshake up with an
/// encrypted alert and nothing says why (`tls_handshake_rejected_by_client`).
pub fn tls_from_wire(case: &Case<'_>) -> Option<Verdict> {
    let (k, facts) = wire_facts(case)?;
    let ts = at(k);
    let sni = facts.iter().find_map(|f| match f {
        WireFact::TlsClientHello { sni, .. } => sni.clone(),
        _ => None,
    });
    let alert = facts.iter().find_map(|f| match f {
        WireFact::TlsAlert {
            from_server,
            fatal: true,
            name,
            code,
        } => Some((*from_server, name.clone(), *code)),
        _ => None,
    });
    let mismatch = facts.iter().find_map(|f| match f {
        WireFact::TlsCertificate {
            subject,
            names,
            issuer,
            sha256,
            matches_sni: Some(false),
            probed_unix_s: None,
            ..
        } => Some((subject, names, issuer, sha256)),
        _ => None,
    });
    if let Some((subject, names, issuer, sha256)) = mismatch {
        let sni = sni.unwrap_or_else(|| "the name requested".into());
        let mut evidence = vec![
            Evidence::wire(ts, format!("ClientHello SNI: {sni}")),
            Evidence::wire(
                ts,
                format!(
                    "certificate presented (TLS 1.2, in plaintext): subject {subject:?}, names [{}], issuer {issuer:?}, sha256 {}…",
                    names.join(", "),
                    sha256.chars().take(16).collect::<String>()
                ),
            ),
        ];
        if let Some(a) = &alert {
            evidence.push(Evidence::wire(ts, alert_words(a)));
        }
        evidence.extend(kernel_summary(k));
        return Some(Verdict {
            cause: "tls_cert_mismatch",
            detail: None,
            title: "TLS certificate not valid for the name requested (SNI)".into(),
            confidence: Confidence::new(
                Level::High,
                "the SNI in the ClientHello was compared with the names in the certificate the server sent",
            ),
            evidence,
            hint: format!(
                "the server presented a certificate not valid for {sni} (it names {}): usually a reverse proxy's default certificate, served because no router/host rule matched {sni} or its certificate failed to load",
                names.join(", ")
            ),
        });
    }
    let client_alert = alert.as_ref().filter(|a| !a.0).map(alert_words);
    if let Some(v) = probe_verdict(k, ts, sni.as_deref(), client_alert) {
        return Some(v);
    }
    match alert {
        Some(a) => Some(fatal_alert(k, sni.as_deref(), a)),
        None => rejected_by_client(k, ts, sni.as_deref()),
    }
}

/// A fatal plaintext alert: who sent it, its name and code.
type Alert = (bool, String, u8);

fn alert_words((from_server, name, code): &Alert) -> String {
    format!(
        "fatal TLS alert {name} ({code}) sent by the {}",
        if *from_server { "server" } else { "client" }
    )
}

/// `tls_alert`: a fatal plaintext alert ended the handshake (with the certificate
/// probe's evidence when it looked).
fn fatal_alert(k: &ConnRecord, sni: Option<&str>, a: Alert) -> Verdict {
    let ts = at(k);
    let mut evidence = vec![Evidence::wire(ts, alert_words(&a))];
    if let Some(s) = sni {
        evidence.push(Evidence::wire(ts, format!("ClientHello SNI: {s}")));
    }
    if let Some(p) = Probed::of(k) {
        evidence.push(p.evidence(k, sni));
    }
    evidence.extend(kernel_summary(k));
    Verdict {
        cause: "tls_alert",
        detail: Some(a.1.clone()),
        title: format!("TLS handshake ended by a fatal alert: {}", a.1),
        confidence: Confidence::new(
            Level::High,
            "the alert was read in plaintext from the connection",
        ),
        evidence,
        hint: if a.0 {
            "the server refused the handshake: check the protocol versions, cipher suites, SNI and ALPN it accepts, and whether it wants a client certificate".into()
        } else {
            "the client rejected the server's handshake (often its certificate: unknown CA, wrong name, expired): see the alert's name".into()
        },
    }
}

/// An h2c GOAWAY with an error code, or an RST_STREAM, seen on the wire.
pub fn h2_from_wire(case: &Case<'_>) -> Option<Verdict> {
    let (k, facts) = wire_facts(case)?;
    let ts = at(k);
    for f in facts {
        match f {
            WireFact::H2Goaway {
                from_server: true,
                code,
                last_stream_id,
                debug,
                streams_in_flight,
                streams_unprocessed,
            } if code != "NO_ERROR" => {
                let max = facts.iter().find_map(|f| match f {
                    WireFact::H2Settings {
                        max_concurrent_streams,
                    } => Some(max_concurrent_streams.to_string()),
                    _ => None,
                });
                let max = max.unwrap_or_else(|| "not announced".into());
                let debug = if debug.is_empty() {
                    String::new()
                } else {
                    format!(", debug data {debug:?}")
                };
                let mut evidence = vec![
                    Evidence::wire(
                        ts,
                        format!("GOAWAY {code} with last_stream_id {last_stream_id}{debug}"),
                    ),
                    Evidence::wire(
                        ts,
                        format!(
                            "{streams_in_flight} client streams in flight when it came ({streams_unprocessed} above last_stream_id: never processed, safe to retry); server SETTINGS_MAX_CONCURRENT_STREAMS {max}"
                        ),
                    ),
                ];
                evidence.extend(kernel_summary(k));
                let (cause, detail) = if code == "ENHANCE_YOUR_CALM" {
                    ("h2_goaway_enhance_your_calm", None)
                } else {
                    ("h2_goaway", Some(code.clone()))
                };
                return Some(Verdict {
                    cause,
                    detail,
                    title: format!("HTTP/2 GOAWAY {code}"),
                    confidence: Confidence::new(
                        Level::High,
                        "the server's GOAWAY frame was read from the connection's h2c bytes",
                    ),
                    evidence,
                    hint: format!(
                        "the server tore the connection down with {code} (RFC 9113 section 7): for ENHANCE_YOUR_CALM keep the client's streams per connection under the server's SETTINGS_MAX_CONCURRENT_STREAMS ({max}) or raise the server's limit; streams above last_stream_id are safe to retry"
                    ),
                });
            }
            WireFact::H2RstStream {
                from_server: true,
                stream_id,
                code,
            } => {
                let mut evidence = vec![Evidence::wire(
                    ts,
                    format!("RST_STREAM {code} on stream {stream_id} from the server"),
                )];
                evidence.extend(kernel_summary(k));
                return Some(Verdict {
                    cause: "h2_rst_stream",
                    detail: Some(code.clone()),
                    title: format!("HTTP/2 stream reset by the server: {code}"),
                    confidence: Confidence::new(Level::High, "the server's RST_STREAM frame was read from the connection's h2c bytes"),
                    evidence,
                    hint: "the server reset the stream with this code (RFC 9113 section 7); REFUSED_STREAM means it was never processed and is safe to retry".into(),
                });
            }
            _ => {}
        }
    }
    None
}

/// The connect ended by an ICMP destination unreachable (a router or firewall rejected
/// the SYN), other than port unreachable, which `connect_refused` takes (ECONNREFUSED).
pub fn connect_unreachable(case: &Case<'_>) -> Option<Verdict> {
    let k = case.kernel?;
    if k.facts.established_unix_ns.is_some() {
        return None;
    }
    let (from, icmp_type, code, errno) = k.wire.iter().find_map(|f| match f {
        WireFact::IcmpUnreachable {
            from,
            icmp_type,
            code,
            errno,
        } if *errno != libc::ECONNREFUSED => Some((*from, *icmp_type, *code, *errno)),
        _ => None,
    })?;
    let ts = k.facts.errno_unix_ns.unwrap_or(k.last_unix_ns);
    let name = std::io::Error::from_raw_os_error(errno).to_string();
    let mut evidence = vec![Evidence::wire(
        ts,
        format!(
            "ICMP destination unreachable (type {icmp_type}, code {code}) from {from}: the kernel ended the connect with errno {errno} ({name})"
        ),
    )];
    evidence.extend(case.request_evidence());
    evidence.extend(kernel_summary(k));
    Some(Verdict {
        cause: "connect_unreachable",
        detail: Some(name),
        title: format!("connect rejected by ICMP from {from}"),
        confidence: Confidence::new(
            Level::High,
            "the raw capture read the ICMP error that quoted the SYN",
        ),
        evidence,
        hint: format!(
            "{from} rejected the SYN (a firewall's reject rule, or no route): check the firewall rules and routes between this host and the target"
        ),
    })
}
