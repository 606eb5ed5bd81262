//! The terminal rendering: ranked causes first (count, share, confidence, evidence,
//! hint), then the unattributed bucket, then what was recorded and what may be missing.
use std::fmt::Write as _;

use super::{Cause, Example, Report, duration, percent, thousands};
use crate::{
    raw::source::CaptureReport,
    rules::{Evidence, Source},
    tls_probe::Verdict,
};

/// Evidence lines shown per cause.
const EVIDENCE_LINES: usize = 4;

impl Report {
    /// For terminals: ranked causes first, then the run's facts.
    pub fn to_text(&self) -> String {
        render(self)
    }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let _ = writeln!(out, "{}", headline(r));
    out.push('\n');
    if r.causes.is_empty() && t.unattributed == 0 {
        out.push_str("no failures\n\n");
    }
    for c in &r.causes {
        cause(&mut out, c);
    }
    if t.unattributed > 0 {
        let u = &r.unattributed;
        let classes: Vec<String> = u.by_class.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "  -  unattributed  {} ({})  no rule explains them; classes: {}",
            thousands(u.count),
            percent(u.share),
            classes.join(", ")
        );
        if let Some(e) = u.examples.first() {
            example_lines(&mut out, e);
        }
        out.push('\n');
    }
    run_facts(&mut out, r);
    out
}

/// `N of M requests failed (x%)`, and the kernel-only failures.
pub(super) fn headline(r: &Report) -> String {
    let t = &r.totals;
    let mut s = String::from("faultline report: ");
    if t.requests > 0 {
        let share = t.requests_failed as f64 / t.requests as f64;
        let _ = write!(
            s,
            "{} of {} requests failed ({})",
            thousands(t.requests_failed),
            thousands(t.requests),
            percent(share)
        );
        if t.kernel_only_failures > 0 {
            let _ = write!(
                s,
                "; {} more failed connections seen only by the kernel",
                thousands(t.kernel_only_failures)
            );
        }
    } else if t.plaintext_requests > 0 {
        let _ = write!(
            s,
            "{} failures seen by the kernel (no loadgen events), {} of them among {} HTTP \
             requests read from the clients' plaintext",
            thousands(t.kernel_only_failures),
            thousands(t.plaintext_requests_failed),
            thousands(t.plaintext_requests)
        );
    } else {
        let _ = write!(
            s,
            "{} failed connections seen by the kernel (no loadgen events)",
            thousands(t.kernel_only_failures)
        );
    }
    if t.connections_ended_abnormally_after_all_answered > 0 {
        let _ = write!(
            s,
            "; {} connections ended with a reset after every request was answered (not \
             failures)",
            thousands(t.connections_ended_abnormally_after_all_answered)
        );
    }
    s
}

fn cause(out: &mut String, c: &Cause) {
    let n = &c.confidence_counts;
    let mixed = [n.high, n.medium, n.low].iter().filter(|x| **x > 0).count() > 1;
    let counts = if mixed {
        format!(" (high {}, medium {}, low {})", n.high, n.medium, n.low)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{:>3}. {}  {} ({})  confidence {}{counts}",
        c.rank,
        c.id,
        thousands(c.count),
        percent(c.share),
        c.confidence.level.as_str()
    );
    let _ = writeln!(out, "     {}", c.title);
    if let Some(e) = c.examples.first() {
        example_lines(out, e);
    }
    let _ = writeln!(out, "     why: {}", c.confidence.why);
    let _ = writeln!(out, "     hint: {}", c.hint);
    out.push('\n');
}

fn example_lines(out: &mut String, e: &Example) {
    let conn = match (e.local, e.remote) {
        (Some(l), Some(r)) => format!("{l} → {r}"),
        (None, Some(r)) => format!("→ {r}"),
        _ => "no connection".into(),
    };
    let cookie = e
        .sock_cookie
        .map_or(String::new(), |c| format!(", cookie {c}"));
    let _ = writeln!(
        out,
        "     example: {conn}{cookie} (join: {})",
        e.join.as_str()
    );
    for (i, ev) in e.evidence.iter().take(EVIDENCE_LINES).enumerate() {
        let label = if i == 0 { "evidence:" } else { "         " };
        let _ = writeln!(out, "     {label} {}", evidence_line(ev));
    }
}

/// `at source: what`.
pub(super) fn evidence_line(e: &Evidence) -> String {
    let source = match e.source {
        Source::Kernel => "kernel",
        Source::Loadgen => "loadgen",
        Source::Host => "host",
        Source::Wire => "wire",
        Source::Probe => "probe",
    };
    match e.ts_unix_ns {
        Some(t) => format!("{} {source}: {}", events::time::rfc3339_ns(t), e.what),
        None => format!("{source}: {}", e.what),
    }
}

fn run_facts(out: &mut String, r: &Report) {
    let run = &r.run;
    let c = &r.totals.connections;
    out.push_str("run\n");
    let _ = writeln!(
        out,
        "  analyzer {}, kernel {}, from {} for {}",
        run.analyzer_version,
        if run.kernel_release.is_empty() {
            "?"
        } else {
            &run.kernel_release
        },
        events::time::rfc3339_ns(run.started_unix_ns),
        duration(run.duration_ns)
    );
    let missing: Vec<String> = run
        .probes
        .missing
        .iter()
        .map(|m| format!("{} ({})", m.tracepoint, m.reason))
        .collect();
    let _ = writeln!(
        out,
        "  probes: {} attached, {} missing{}",
        run.probes.attached.len(),
        missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(": {}", missing.join("; "))
        }
    );
    if let Some(cap) = &run.capture {
        capture_line(out, cap, run.backend_notice.as_deref());
    }
    if let Some(line) = probes_line(r) {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "  lost events {} (ring buffer full), field read failures {}, undecodable {}, evicted connections {}",
        thousands(run.lost_events),
        thousands(run.read_failures),
        thousands(run.decode_errors),
        thousands(run.evicted_connections)
    );
    let events: Vec<String> = c
        .events
        .iter()
        .map(|(k, v)| format!("{} {}", json_name(k), thousands(*v)))
        .collect();
    let _ = writeln!(
        out,
        "  kernel events: {}",
        if events.is_empty() {
            "none".into()
        } else {
            events.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  connections: {} tracked, {} failed, {} clean (counted, not kept), {} live at the end",
        thousands(c.tracked),
        thousands(r.totals.connections_failed),
        thousands(c.closed_clean),
        thousands(c.live)
    );
    for f in run.kernel_files.iter().chain(&run.loadgen_files) {
        let cut = if f.truncated {
            ", last line truncated"
        } else {
            ""
        };
        let _ = writeln!(out, "  file {}: {} lines{cut}", f.path, thousands(f.lines));
    }
    let j = &r.totals.joins;
    if r.totals.requests > 0 {
        let _ = writeln!(
            out,
            "  joined: {} of {} loadgen connections by cookie, {} by tuple and time; failures without kernel record: {}",
            thousands(j.connections_by_cookie),
            thousands(j.loadgen_connections),
            thousands(j.connections_by_tuple_time),
            thousands(j.failures_loadgen_only)
        );
    }
    for w in &run.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
}

/// The certificate probe's handshakes, when any was made: target, connections judged and
/// what it found (its evidence is not the wire's, so the report says it looked).
pub(super) fn probes_line(r: &Report) -> Option<String> {
    if r.probes.is_empty() {
        return None;
    }
    let each: Vec<String> = r
        .probes
        .iter()
        .map(|p| {
            let found = match (p.outcome.verdict(), &p.outcome.error) {
                (Some(v), _) => verdict_words(v).to_owned(),
                (None, Some(e)) => e.to_string(),
                (None, None) => "no certificate seen".to_owned(),
            };
            let sni = p.sni.as_deref().unwrap_or("(none)");
            format!(
                "{} SNI {sni} ({} connections): {found}",
                p.addr,
                thousands(p.connections as u64)
            )
        })
        .collect();
    Some(format!(
        "certificate probe: {} TLS handshakes of the analyzer's own after the run: {}",
        r.probes.len(),
        each.join("; ")
    ))
}

fn verdict_words(v: &Verdict) -> &'static str {
    match v {
        Verdict::Mismatch => "certificate not valid for the SNI",
        Verdict::Expired => "certificate expired",
        Verdict::NotYetValid => "certificate not yet valid",
        Verdict::Untrusted { .. } => "certificate untrusted",
        Verdict::TrustUnknown { .. } => "certificate names and dates fine, trust not judged",
        Verdict::Valid => "certificate valid",
    }
}

/// What the raw backend captured, and why it ran (an `auto` fallback).
fn capture_line(out: &mut String, cap: &CaptureReport, notice: Option<&str>) {
    let _ = writeln!(
        out,
        "  backend raw (AF_PACKET on {}): {} packets, {} dropped by the kernel, {} connections followed{}",
        cap.interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        thousands(cap.interfaces.iter().map(|i| i.packets).sum()),
        thousands(cap.drops()),
        thousands(cap.track.flows),
        notice.map_or(String::new(), |n| format!(" ({n})"))
    );
    if let Some(k) = &cap.keylog {
        let _ = writeln!(
            out,
            "  keylog {}: {} TLS connections decrypted, {} with no key in it, {} with keys too late, {} not decryptable (version or suite), {} records failed authentication (wrong key), {} malformed lines",
            k.path,
            thousands(k.connections_decrypted),
            thousands(k.connections_no_key),
            thousands(k.connections_keys_too_late),
            thousands(k.connections_unsupported),
            thousands(k.records_failed_auth),
            thousands(k.malformed_lines),
        );
    }
}

/// The JSON name of a serde unit enum value.
pub(super) fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
