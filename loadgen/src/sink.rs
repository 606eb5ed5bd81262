//! The single consumer of a run: it owns the statistics, streams every record to the
//! `--events` file as it arrives (so memory stays flat and an interrupted run keeps what
//! it recorded), and shows live progress on stderr.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use tokio::sync::mpsc;

use crate::{progress::Progress, record::Msg, stats::Stats};

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
    let line = Progress::new(progress);
    let every = line.every();
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
            _ = tick.tick(), if progress => line.show(&stats, started.elapsed(), target_rate),
        }
    }
    line.finish();
    if let Some((path, mut w)) = events {
        w.flush().map_err(|source| SinkError { path, source })?;
    }
    Ok(SinkResult {
        stats,
        event_lines: lines,
    })
}
