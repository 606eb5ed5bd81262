//! Connection churn at the most this host can make: the generator for the analyzer's
//! new-connections-per-second benchmark (`bench/churn.sh`).
//!
//! HTTP generators top out near 8,000 new connections/s on this 2-core machine because
//! each connection also carries a request through a user-space server. This tool keeps
//! only what the analyzer sees, the TCP lifecycle: client threads `connect()` to a
//! listener in the same process whose acceptor threads `accept()` and close at once, so
//! each connection is a full handshake, a server FIN, the client's close and two socket
//! destructions (about ten tracepoint hits). Blocking std sockets and threads: nothing
//! between the syscalls and the measurement.
//!
//! ```text
//! cargo bench -p faultline-tests --bench churn -- --port 18491 --seconds 5 [--rate 20000]
//! ```
//!
//! It prints one line of JSON: connections completed, failed connects, elapsed seconds,
//! connections/s, and this process's user+sys CPU seconds. Traffic stays on 127.0.0.1.
//! Every loop ends at the deadline; a stuck connect is cut by the 1 s socket timeouts.
use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Listen on 127.0.0.1:PORT (the analyzer's --port filter names it).
    #[arg(long, default_value_t = 18491)]
    port: u16,
    /// Seconds of churn.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Target new connections/s over all clients; 0 runs flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Acceptor threads.
    #[arg(long, default_value_t = 1)]
    acceptors: usize,
    /// Accepted by `cargo bench` (it passes --bench); ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let args = Args::parse();
    let addr: SocketAddr = ([127, 0, 0, 1], args.port).into();
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("churn: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let listener = Arc::new(listener);
    let mut acceptors = Vec::new();
    for _ in 0..args.acceptors.max(1) {
        let (l, stop) = (Arc::clone(&listener), Arc::clone(&stop));
        acceptors.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Accepted and dropped at once: the server closes first.
                let _ = l.accept();
            }
        }));
    }
    let seconds = args.seconds.clamp(0.1, 3600.0);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let clients = args.clients.max(1);
    // Each client paces its share of the rate against intended start times.
    let gap = (args.rate > 0).then(|| Duration::from_secs_f64(clients as f64 / args.rate as f64));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        workers.push(thread::spawn(move || {
            let mut next = Instant::now();
            let mut buf = [0u8; 16];
            while Instant::now() < deadline {
                if let Some(gap) = gap {
                    let now = Instant::now();
                    if next > now {
                        thread::sleep(next - now);
                    }
                    next += gap;
                }
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(mut s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        // Wait for the server's FIN, then close: no TIME_WAIT on this side.
                        let _ = s.read(&mut buf);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    // Wake each acceptor blocked in accept() so it sees the stop flag.
    for _ in 0..args.acceptors.max(1) {
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }
    for a in acceptors {
        let _ = a.join();
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "connections": n,
            "failed": failed.load(Ordering::Relaxed),
            "seconds": elapsed,
            "conn_per_sec": n as f64 / elapsed,
            "cpu_seconds": cpu,
            "rate": args.rate,
        })
    );
}
