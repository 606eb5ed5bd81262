//! The text report on stdout: `vegeta report`'s layout, plus the failure taxonomy.
use std::fmt::Write as _;

use crate::summary::{ClassSummary, Latency, Summary};

/// Lines are wrapped or cut to stay within this many columns.
const WIDTH: usize = 100;
/// Error texts shown per class; the JSON keeps them all.
const TEXTS_PER_CLASS: usize = 5;
/// Column where the values start on the metric lines.
const VALUE_COL: usize = 47;
/// Width of the class-name column ("tls_cert_name_mismatch" is 22).
const CLASS_COL: usize = 24;

/// Formats milliseconds the way people read durations: `850µs`, `612.3ms`, `1.5s`.
pub fn format_ms(ms: f64) -> String {
    if ms.is_nan() {
        return "n/a".to_owned();
    }
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if ms >= 1_000.0 {
        format!("{}s", trim(format!("{:.3}", ms / 1_000.0)))
    } else if ms >= 10.0 {
        format!("{}ms", trim(format!("{ms:.1}")))
    } else if ms >= 1.0 {
        format!("{}ms", trim(format!("{ms:.2}")))
    } else {
        format!("{}µs", trim(format!("{:.0}", ms * 1_000.0)))
    }
}

/// Formats seconds, with minutes and hours for long runs: `33m0.5s`.
fn format_s(s: f64) -> String {
    if s < 60.0 {
        return format_ms(s * 1_000.0);
    }
    let whole = s.floor() as u64;
    let (h, m) = (whole / 3_600, (whole % 3_600) / 60);
    let rest = format!("{:.3}", s - (h * 3_600 + m * 60) as f64);
    let rest = rest.trim_end_matches('0').trim_end_matches('.');
    if h > 0 {
        format!("{h}h{m}m{rest}s")
    } else {
        format!("{m}m{rest}s")
    }
}

fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// Cuts `s` to `width` characters, marking the cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Joins `items` with `sep` into lines that start at column `indent` (the first line's
/// prefix is the caller's) and stay within [`WIDTH`].
fn wrap(items: &[String], sep: &str, indent: usize) -> Vec<String> {
    let room = WIDTH.saturating_sub(indent).max(20);
    let mut lines = vec![String::new()];
    for (i, item) in items.iter().enumerate() {
        let last = lines.last_mut().expect("lines is never empty");
        let piece = if i + 1 < items.len() {
            format!("{item}{sep}")
        } else {
            item.clone()
        };
        if !last.is_empty() && last.chars().count() + piece.trim_end().chars().count() > room {
            lines.push(piece);
        } else {
            last.push_str(&piece);
        }
    }
    lines.into_iter().map(|l| l.trim_end().to_owned()).collect()
}

/// One metric line: label, bracketed field names, values (wrapped under the value column).
fn metric(out: &mut String, label: &str, fields: &str, values: &[String]) {
    let head = format!("{label:<13} [{fields}]");
    let lines = wrap(values, ", ", VALUE_COL);
    for (i, line) in lines.iter().enumerate() {
        let prefix = if i == 0 { head.as_str() } else { "" };
        writeln!(out, "{prefix:<VALUE_COL$}{line}").expect("writing to a String");
    }
}

fn latency_values(l: &Latency) -> Vec<String> {
    [l.min, l.mean, l.p50, l.p90, l.p95, l.p99, l.max]
        .into_iter()
        .map(format_ms)
        .collect()
}

/// The final report, readable at 100 columns.
pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    if s.interrupted {
        out.push_str("Interrupted: the run was stopped early; these numbers cover what ran.\n");
    }
    let r = &s.requests;
    metric(
        &mut out,
        "Requests",
        "total, rate, throughput",
        &[
            r.total.to_string(),
            format!("{:.2}", s.rate.achieved_per_sec),
            format!("{:.2}", s.rate.throughput_per_sec),
        ],
    );
    if let Some(target) = s.rate.target_per_sec {
        metric(&mut out, "Target", "rate", &[format!("{target:.2}")]);
    }
    metric(
        &mut out,
        "Duration",
        "total, attack, wait",
        &[
            format_s(s.duration_s),
            format_s(s.attack_s),
            format_s(s.wait_s),
        ],
    );
    metric(
        &mut out,
        "Latencies",
        "min, mean, 50, 90, 95, 99, max",
        &latency_values(&s.latency_ms),
    );
    if s.service_latency_ms.count > 0 {
        metric(
            &mut out,
            "Service",
            "min, mean, 50, 90, 95, 99, max",
            &latency_values(&s.service_latency_ms),
        );
    }
    let b = &s.bytes;
    metric(
        &mut out,
        "Bytes In",
        "total, mean",
        &[b.in_total.to_string(), format!("{:.2}", b.in_mean)],
    );
    metric(
        &mut out,
        "Bytes Out",
        "total, mean",
        &[b.out_total.to_string(), format!("{:.2}", b.out_mean)],
    );
    outcomes(&mut out, s);
    out.push('\n');
    failures(&mut out, s);
    out
}

/// The metric lines after the volumes: success, retries, status codes, overload, lag
/// and connections.
fn outcomes(out: &mut String, s: &Summary) {
    let r = &s.requests;
    metric(out, "Success", "ratio", &[percent(r.success_ratio)]);
    metric(out, "Retries", "count", &[r.retries.to_string()]);
    let codes: Vec<String> = s
        .status_codes
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect();
    metric(out, "Status Codes", "code:count", &codes);
    let o = &s.overload;
    metric(
        out,
        "Overload",
        &format!("late >{}, skipped", format_ms(o.late_threshold_ms)),
        &[o.late.to_string(), o.skipped.to_string()],
    );
    metric(
        out,
        "Lag",
        "50, 99, max",
        &[
            format_ms(s.lag_ms.p50),
            format_ms(s.lag_ms.p99),
            format_ms(s.lag_ms.max),
        ],
    );
    let c = &s.connections;
    metric(
        out,
        "Connections",
        "opened, failed, tls failed",
        &[
            c.opened.to_string(),
            c.failed.to_string(),
            c.tls_failed.to_string(),
        ],
    );
    if !c.closed.is_empty() {
        let closed: Vec<String> = c
            .closed
            .iter()
            .map(|(how, n)| format!("{how}:{n}"))
            .collect();
        metric(out, "Closed", "how:count", &closed);
    }
}

/// The "Failures by class" table: count, shares, phases and the top error texts.
fn failures(out: &mut String, s: &Summary) {
    let r = &s.requests;
    if r.failed == 0 {
        out.push_str("Failures by class: none\n");
        return;
    }
    writeln!(
        out,
        "Failures by class ({} of {} requests failed, {})",
        r.failed,
        r.total,
        percent(1.0 - r.success_ratio)
    )
    .expect("writing to a String");
    let head = format!(
        "  {:<CLASS_COL$}{:>9}{:>11}{:>9}  phases",
        "class", "count", "% failed", "% all"
    );
    out.push_str(&head);
    out.push('\n');
    // One width for every class's error counts, so the texts line up down the table.
    let count_width = s
        .classes
        .iter()
        .flat_map(|c| &c.errors)
        .map(|e| e.count.to_string().len())
        .max()
        .unwrap_or(1);
    for class in &s.classes {
        class_rows(out, class, count_width);
    }
}

fn class_rows(out: &mut String, c: &ClassSummary, count_width: usize) {
    let row = format!(
        "  {:<CLASS_COL$}{:>9}{:>11}{:>9}  ",
        c.class.as_str(),
        c.count,
        percent(c.share_of_failures),
        percent(c.share_of_requests)
    );
    let phase_col = row.chars().count();
    let phases: Vec<String> = c.phases.iter().map(|(p, n)| format!("{p}:{n}")).collect();
    for (i, line) in wrap(&phases, " ", phase_col).iter().enumerate() {
        let prefix = if i == 0 { row.as_str() } else { "" };
        writeln!(out, "{prefix:<phase_col$}{line}").expect("writing to a String");
    }
    let text_room = WIDTH - 6 - count_width - 2;
    for e in c.errors.iter().take(TEXTS_PER_CLASS) {
        writeln!(
            out,
            "      {:>count_width$}  {}",
            e.count,
            cut(&e.text, text_room)
        )
        .expect("writing to a String");
    }
    let rest = &c.errors[c.errors.len().min(TEXTS_PER_CLASS)..];
    if !rest.is_empty() {
        let n: u64 = rest.iter().map(|e| e.count).sum();
        writeln!(
            out,
            "      … {} more texts, {n} requests (all in the JSON report)",
            rest.len()
        )
        .expect("writing to a String");
    }
}
