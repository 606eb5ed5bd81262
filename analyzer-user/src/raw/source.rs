//! The raw backend as an event source for `analyzer attach`: one capture thread per
//! interface parses frames, runs them through the shared [`Tracker`] and hands batches of
//! [`Observed`] events to the session over a bounded channel (a slow session blocks the
//! capture threads, the kernel then drops packets and counts them: never silent).
use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wire::packet::{Packet, parse_frame};

use wire::capture::{CaptureCounts, CaptureError, IfaceCapture};

use super::{
    tls::keylog::{KeyLog, KeylogStats},
    track::{TrackConfig, TrackStats, Tracker},
};
use crate::event::{Clock, Observed};

/// Connections quiet this long are forgotten (a SYN never answered, a capture that
/// missed the close).
const FLOW_IDLE: Duration = Duration::from_secs(120);

/// What the raw backend captures.
#[derive(Clone, Debug, Default)]
pub struct RawOptions {
    /// Interfaces to capture on; empty: `lo`.
    pub ifaces: Vec<String>,
    /// Ports to keep (the kernel filter); empty: every TCP port.
    pub ports: Vec<u16>,
    /// Addresses to keep (either end; checked here, not in the kernel); empty: all.
    pub addrs: Vec<IpAddr>,
    pub track: TrackConfig,
}

/// Per-interface capture counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceCounts {
    pub name: String,
    /// Packets that passed the socket filter (PACKET_STATISTICS tp_packets).
    pub packets: u64,
    /// Of which dropped by the kernel because the capture fell behind (tp_drops).
    pub drops: u64,
}

/// The raw backend's account of a session, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureReport {
    pub interfaces: Vec<IfaceCounts>,
    /// Frames read that were not TCP segments or ICMP errors this parser understands.
    pub unparsed_frames: u64,
    pub track: TrackStats,
    /// With `--keylog`: the key log read, and the TLS connections it decrypted (or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keylog: Option<KeylogStats>,
}

impl CaptureReport {
    /// Packets dropped by the kernel on every interface.
    pub fn drops(&self) -> u64 {
        self.interfaces.iter().map(|i| i.drops).sum()
    }
}

struct Shared {
    tracker: Mutex<Tracker>,
    stop: AtomicBool,
    unparsed: std::sync::atomic::AtomicU64,
}

/// A running capture.
pub struct RawSource {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<IfaceCounts>>,
    rx: mpsc::Receiver<Vec<Observed>>,
    keylog: Option<Arc<KeyLog>>,
}

impl std::fmt::Debug for RawSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSource").finish_non_exhaustive()
    }
}

/// This host's addresses, for telling local ends from remote ones.
fn local_ips() -> Vec<IpAddr> {
    pnet_datalink::interfaces()
        .into_iter()
        .flat_map(|i| i.ips.into_iter().map(|n| n.ip()))
        .collect()
}

impl RawSource {
    /// Opens every interface (all or none: an error names the interface) and starts
    /// capturing.
    pub fn start(opts: &RawOptions) -> Result<Self, CaptureError> {
        let names = if opts.ifaces.is_empty() {
            vec!["lo".to_owned()]
        } else {
            opts.ifaces.clone()
        };
        let caps = names
            .iter()
            .map(|n| IfaceCapture::open(n, &opts.ports))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new(opts.track.clone(), local_ips())),
            stop: AtomicBool::new(false),
            unparsed: std::sync::atomic::AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(1024);
        let addrs: Arc<[IpAddr]> = opts.addrs.clone().into();
        let clock = Clock::now();
        let threads = caps
            .into_iter()
            .map(|cap| {
                let (shared, tx, addrs) = (Arc::clone(&shared), tx.clone(), Arc::clone(&addrs));
                std::thread::spawn(move || capture_loop(cap, &shared, &tx, clock, &addrs))
            })
            .collect();
        let keylog = opts.track.inspect.as_ref().and_then(|i| i.keylog.clone());
        Ok(Self {
            shared,
            threads,
            rx,
            keylog,
        })
    }

    /// The next batch of events; `None` once every capture thread has ended.
    pub async fn recv(&mut self) -> Option<Vec<Observed>> {
        self.rx.recv().await
    }

    /// Everything already queued, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Observed>) {
        while let Ok(mut batch) = self.rx.try_recv() {
            out.append(&mut batch);
        }
    }

    /// Stops the capture threads and reports what they saw. Events still queued are
    /// appended to `out`.
    pub fn stop(mut self, out: &mut Vec<Observed>) -> CaptureReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut interfaces = Vec::new();
        let threads = std::mem::take(&mut self.threads);
        for t in threads {
            // Keep draining so a thread blocked on a full channel can finish.
            while !t.is_finished() {
                self.drain(out);
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Ok(c) = t.join() {
                interfaces.push(c);
            }
        }
        self.drain(out);
        // The connections still open end with the capture: their HTTP tallies.
        let track = self
            .shared
            .tracker
            .lock()
            .map(|mut t| {
                t.finish_all(Clock::now().to_unix_ns(mono_ns()), out);
                t.stats().clone()
            })
            .unwrap_or_default();
        CaptureReport {
            interfaces,
            unparsed_frames: self.shared.unparsed.load(Ordering::Relaxed),
            track,
            keylog: self.keylog.as_deref().map(KeyLog::stats),
        }
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn capture_loop(
    mut cap: IfaceCapture,
    shared: &Shared,
    tx: &mpsc::Sender<Vec<Observed>>,
    clock: Clock,
    addrs: &[IpAddr],
) -> IfaceCounts {
    const BATCH: usize = 256;
    let mut batch: Vec<Observed> = Vec::with_capacity(BATCH);
    let mut last_flush = Instant::now();
    let mut last_expire = Instant::now();
    let link = cap.link;
    // The kernel stamps each packet with CLOCK_REALTIME; the tracker also wants the
    // monotonic time, read back through the clock's offset taken at start.
    let mono_to_unix = clock.to_unix_ns(0);
    while !shared.stop.load(Ordering::Relaxed) {
        match cap.next_packet() {
            Ok(Some(frame)) => {
                let ts_unix_ns = frame.ts_unix_ns;
                let ts_ns = ts_unix_ns.saturating_sub(mono_to_unix);
                match parse_frame(link, frame.data) {
                    Ok(Packet::Tcp(seg))
                        if addrs.is_empty()
                            || addrs.contains(&seg.src.ip())
                            || addrs.contains(&seg.dst.ip()) =>
                    {
                        if let Ok(mut t) = shared.tracker.lock() {
                            t.segment(&seg, ts_ns, ts_unix_ns, &mut batch);
                        }
                    }
                    Ok(Packet::Unreachable(u)) => {
                        if let Ok(mut t) = shared.tracker.lock() {
                            t.unreachable(&u, ts_ns, ts_unix_ns, &mut batch);
                        }
                    }
                    // Other addresses (--remote).
                    Ok(Packet::Tcp(_)) => {}
                    Err(_) => {
                        shared.unparsed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(iface = %cap.name, error = %e, "capture read failed; stopping this interface");
                break;
            }
        }
        // One clock read per frame; a full batch is handed over and replaced by one of
        // the same capacity (no regrowth, no copying as it fills).
        let now = Instant::now();
        if !batch.is_empty()
            && (batch.len() >= BATCH || now - last_flush >= Duration::from_millis(10))
        {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(full).is_err() {
                break;
            }
            last_flush = now;
        }
        if now - last_expire >= Duration::from_secs(1) {
            last_expire = now;
            if let Ok(mut t) = shared.tracker.lock() {
                t.expire(clock.to_unix_ns(mono_ns()), FLOW_IDLE.as_nanos() as u64);
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    let c: CaptureCounts = cap.counts();
    if c.bad_blocks > 0 || c.freezes > 0 {
        tracing::warn!(iface = %cap.name, bad_blocks = c.bad_blocks, freezes = c.freezes,
            "capture ring: blocks given back unread (inconsistent headers) or ring full");
    }
    IfaceCounts {
        name: cap.name.clone(),
        packets: c.packets,
        drops: c.drops,
    }
}
