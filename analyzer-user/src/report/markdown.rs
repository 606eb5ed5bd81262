//! The ticket rendering: one summary table of causes, evidence bullets for the top
//! causes, the run's facts in two lines. Short on purpose.
use std::fmt::Write as _;

use super::{Report, duration, percent, text::evidence_line, thousands};

/// Causes with evidence sections.
const DETAILED: usize = 3;
/// Evidence bullets per detailed cause.
const BULLETS: usize = 4;

impl Report {
    /// For a ticket: a summary table, evidence for the top causes, run facts.
    pub fn to_markdown(&self) -> String {
        render(self)
    }
}

fn render(r: &Report) -> String {
    let mut out = String::from("### faultline: why requests failed\n\n");
    let t = &r.totals;
    let run = &r.run;
    let head = super::text::headline(r);
    let head = head.trim_start_matches("faultline report: ");
    let kernel = if run.kernel_release.is_empty() {
        String::new()
    } else {
        format!(" on kernel {}", run.kernel_release)
    };
    let _ = writeln!(
        out,
        "**{head}** — run of {} from {}{kernel}.\n",
        duration(run.duration_ns),
        events::time::rfc3339_ns(run.started_unix_ns)
    );
    if r.causes.is_empty() && t.unattributed == 0 {
        out.push_str("No failures.\n\n");
    } else {
        summary_table(&mut out, r);
    }
    for c in r.causes.iter().take(DETAILED) {
        let _ = writeln!(out, "#### {}. `{}` — {}\n", c.rank, c.id, escape(&c.title));
        if let Some(e) = c.examples.first() {
            for ev in e.evidence.iter().take(BULLETS) {
                let _ = writeln!(out, "- {}", escape(&evidence_line(ev)));
            }
            if let (Some(l), Some(rm)) = (e.local, e.remote) {
                let cookie = e
                    .sock_cookie
                    .map_or(String::new(), |c| format!(", cookie {c}"));
                let _ = writeln!(
                    out,
                    "- example connection: {l} → {rm}{cookie} (join: {})",
                    e.join.as_str()
                );
            }
        }
        let _ = writeln!(
            out,
            "- confidence {}: {}",
            c.confidence.level.as_str(),
            escape(&c.confidence.why)
        );
        let _ = writeln!(out, "- **what to do:** {}\n", escape(&c.hint));
    }
    run_line(&mut out, r);
    if let Some(line) = super::text::probes_line(r) {
        let _ = writeln!(out, "\n{}", escape(&line));
    }
    out
}

/// The ranked causes as a table, unattributed last.
fn summary_table(out: &mut String, r: &Report) {
    out.push_str("| # | cause | failures | share | confidence |\n|---:|---|---:|---:|---|\n");
    for c in &r.causes {
        let _ = writeln!(
            out,
            "| {} | `{}` {} | {} | {} | {} |",
            c.rank,
            c.id,
            escape(&c.title),
            thousands(c.count),
            percent(c.share),
            c.confidence.level.as_str()
        );
    }
    if r.totals.unattributed > 0 {
        let _ = writeln!(
            out,
            "| – | unattributed (no rule matched) | {} | {} | – |",
            thousands(r.unattributed.count),
            percent(r.unattributed.share)
        );
    }
    out.push('\n');
}

/// The run's facts on one line: version, backend, probes, losses, files.
fn run_line(out: &mut String, r: &Report) {
    let run = &r.run;
    let t = &r.totals;
    let files: Vec<String> = run
        .kernel_files
        .iter()
        .chain(&run.loadgen_files)
        .map(|f| {
            format!(
                "`{}` ({} lines{})",
                f.path,
                thousands(f.lines),
                if f.truncated { ", truncated" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "**Run:** analyzer {}{} · probes {}/{} attached · lost events {} · evicted connections {} · connections tracked {}{}",
        run.analyzer_version,
        if run.capture.is_some() {
            " · backend raw (AF_PACKET capture)"
        } else {
            ""
        },
        run.probes.attached.len(),
        run.probes.attached.len() + run.probes.missing.len(),
        thousands(run.lost_events),
        thousands(run.evicted_connections),
        thousands(t.connections.tracked),
        if files.is_empty() {
            String::new()
        } else {
            format!(" · files: {}", files.join(", "))
        }
    );
}

/// Keeps table cells and bullets intact: pipes escaped, newlines flattened.
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
