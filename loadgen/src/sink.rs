//! The single consumer of a run: it owns the statistics, streams every record to the
//! `--events` file as it arrives (so memory stays flat and an interrupted run keeps what
//! it recorded), and shows live progress on stderr.
use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::{record::Msg, stats::Stats};

/// How often the progress line is refreshed on a terminal, and printed otherwise.
const TTY_EVERY: Duration = Duration::from_millis(500);
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What the consumer hands back at the end.
#[derive(Debug)]
pub struct SinkResult {
    pub stats: Stats,
    /// Lines written to the events file.
    pub event_lines: u64,
}

/// Why the events file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("events file {path}")]
pub struct SinkError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Opens the events file (truncating it) before the run starts, so a bad path fails fast.
pub fn open_events(path: &Path) -> Result<BufWriter<File>, SinkError> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 16, f))
        .map_err(|source| SinkError {
            path: path.to_owned(),
            source,
        })
}

/// Consumes records until every sender is gone.
pub async fn consume(
    mut rx: mpsc::Receiver<Msg>,
    mut events: Option<(PathBuf, BufWriter<File>)>,
    target_rate: Option<f64>,
    progress: bool,
) -> Result<SinkResult, SinkError> {
    let mut stats = Stats::new();
    let mut lines = 0u64;
    let started = Instant::now();
    let tty = progress && io::stderr().is_terminal();
    let every = if tty { TTY_EVERY } else { PLAIN_EVERY };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut buf = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                buf.clear();
                match &msg {
                    Msg::Request { ev, intended_unix_ns } => {
                        stats.record(ev, *intended_unix_ns);
                        if events.is_some() {
                            serde_json::to_writer(&mut buf, ev).expect("events serialize");
                        }
                    }
                    Msg::Conn(ev) => {
                        stats.record_conn(ev);
                        if events.is_some() {
                            serde_json::to_writer(&mut buf, ev).expect("events serialize");
                        }
                    }
                }
                if let Some((path, w)) = events.as_mut() {
                    buf.push(b'\n');
                    w.write_all(&buf).map_err(|source| SinkError { path: path.clone(), source })?;
                    lines += 1;
                }
            }
            _ = tick.tick(), if progress => {
                let line = progress_line(&stats, started.elapsed(), target_rate);
                if tty {
                    eprint!("\r\x1b[K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
    if tty {
        eprint!("\r\x1b[K");
    }
    if let Some((path, mut w)) = events {
        w.flush().map_err(|source| SinkError { path, source })?;
    }
    Ok(SinkResult {
        stats,
        event_lines: lines,
    })
}

/// `12.0s  rate 1250.0/1250 req/s  ok 99.6%  p50 1.2ms p99 8.4ms  tcp_reset:12 peer_eof:3`
fn progress_line(stats: &Stats, elapsed: Duration, target_rate: Option<f64>) -> String {
    let live = stats.snapshot();
    let target = target_rate.map_or_else(String::new, |r| format!("/{r:.0}"));
    let ok = if live.requests == 0 {
        0.0
    } else {
        100.0 * live.successes as f64 / live.requests as f64
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"));
    let mut s = format!(
        "{:>6.1}s  {} req  rate {:.1}{target} req/s  ok {ok:.1}%  p50 {} p99 {}",
        elapsed.as_secs_f64(),
        live.requests,
        live.rate_per_sec,
        ms(live.p50_ms),
        ms(live.p99_ms),
    );
    for (class, n) in &live.top_classes {
        s.push_str(&format!("  {class}:{n}"));
    }
    s
}
