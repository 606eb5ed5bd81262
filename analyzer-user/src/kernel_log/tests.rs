//! Tests of the kernel log: what the writer writes the reader reads back, and every kind
//! of line goes through one bounded reorder window.
use analyzer_common::EventKind;

use super::*;
use crate::{event::wire_fact::WireFact, join::tests::tmp_dir};

#[derive(Default)]
struct Seen {
    headers: usize,
    trailers: Vec<KernelLogEnd>,
    observed: Vec<Observed>,
    files: usize,
}

impl Visit for Seen {
    fn header(&mut self, _: KernelLogMeta) {
        self.headers += 1;
    }
    fn trailer(&mut self, end: KernelLogEnd) {
        self.trailers.push(end);
    }
    fn observed(&mut self, o: &Observed) {
        self.observed.push(o.clone());
    }
    fn file_done(&mut self, _: FileInfo, _: Vec<String>) {
        self.files += 1;
    }
}

fn ts(o: &Observed) -> u64 {
    match o {
        Observed::Kernel(ev) => ev.ts_unix_ns,
        Observed::Wire(w) => w.ts_unix_ns,
    }
}

fn kernel(ts_unix_ns: u64) -> Observed {
    Observed::Kernel(KernelEvent {
        event: EventKind::ReceiveReset,
        ts_ns: ts_unix_ns,
        ts_unix_ns,
        sock_cookie: 7,
        skaddr: 1,
        cpu: 0,
        pid: 0,
        local: Some("127.0.0.1:40000".parse().unwrap()),
        remote: Some("127.0.0.1:8443".parse().unwrap()),
        state: None,
        new_state: None,
        reason: None,
        errno: None,
        location: None,
        tcp: None,
    })
}

fn wire(ts_unix_ns: u64) -> Observed {
    Observed::Wire(WireEvent {
        ts_unix_ns,
        skaddr: 1,
        client: "127.0.0.1:40000".parse().unwrap(),
        server: "127.0.0.1:8443".parse().unwrap(),
        fact: WireFact::ZeroWindow {
            from_server: true,
            count: 1,
        },
    })
}

/// Writes `events` with a header and a trailer through the [`Writer`].
fn write_log(name: &str, events: &[Observed]) -> PathBuf {
    let path = tmp_dir(name).join("kernel.ndjson");
    let mut w = Writer::create(&path, &KernelLogHeader::default()).unwrap();
    for e in events {
        w.write(e).unwrap();
    }
    w.finish(&KernelLogTrailer {
        end: KernelLogEnd {
            lost_events: 3,
            ..KernelLogEnd::default()
        },
    })
    .unwrap();
    path
}

#[test]
fn what_the_writer_writes_the_reader_reads_back() {
    let events = vec![kernel(10), wire(20), kernel(30)];
    let path = write_log("kernel-log-round-trip", &events);
    let mut seen = Seen::default();
    let late = read(&[path], &mut seen).unwrap();
    assert_eq!(late, 0);
    assert_eq!(seen.headers, 1);
    assert_eq!(seen.trailers.len(), 1);
    assert_eq!(seen.trailers[0].lost_events, 3);
    assert_eq!(seen.files, 1);
    assert_eq!(seen.observed, events);
}

/// The bug this guards against: wire lines were pushed onto the reorder heap without the
/// window's pop, so a wire-heavy log was held in memory whole.
#[test]
fn a_wire_heavy_log_is_replayed_in_order_within_a_bounded_window() {
    const WINDOW: usize = 8;
    // 400 lines, nine in ten wire facts, each pair swapped (nearly ordered, as a
    // recording is).
    let mut events: Vec<Observed> = (0..400u64)
        .map(|i| {
            let t = 1_000 + i * 10;
            if i % 10 == 0 { kernel(t) } else { wire(t) }
        })
        .collect();
    for pair in events.chunks_mut(2) {
        pair.swap(0, 1);
    }
    let path = write_log("kernel-log-wire-heavy", &events);
    let mut seen = Seen::default();
    let stats = read_with_window(&[path], WINDOW, &mut seen).unwrap();
    assert!(
        stats.max_held <= WINDOW,
        "the window held {} lines, more than {WINDOW}",
        stats.max_held
    );
    assert_eq!(stats.late, 0);
    assert_eq!(seen.observed.len(), events.len());
    let times: Vec<u64> = seen.observed.iter().map(ts).collect();
    assert!(times.is_sorted(), "{times:?}");
    assert_eq!(
        seen.observed
            .iter()
            .filter(|o| matches!(o, Observed::Wire(_)))
            .count(),
        360
    );
}

#[test]
fn lines_further_out_of_order_than_the_window_are_counted_late() {
    // The earliest line comes last, more than the window behind.
    let mut events: Vec<Observed> = (1..=20u64).map(|i| wire(100 + i)).collect();
    events.push(kernel(1));
    let path = write_log("kernel-log-late", &events);
    let mut seen = Seen::default();
    let stats = read_with_window(&[path], 4, &mut seen).unwrap();
    assert_eq!(stats.late, 1);
    assert!(stats.max_held <= 4);
    assert_eq!(seen.observed.len(), 21);
}

#[test]
fn header_and_trailer_lines_have_their_documented_shape() {
    let line = KernelLogHeader::new(
        "ebpf",
        "6.18.44".into(),
        1,
        AttachReport::default(),
        FilterConfig::default(),
        NameSources::default(),
    )
    .to_line();
    assert!(
        line.starts_with("{\"meta\":{\"format\":1,\"analyzer_version\":") && line.ends_with("}\n"),
        "{line}"
    );
    assert!(
        serde_json::from_str::<KernelEvent>(&line).is_err(),
        "a header is never an event"
    );
    let back: KernelLogHeader = serde_json::from_str(&line).unwrap();
    assert_eq!(back.meta.kernel_release, "6.18.44");
    let end = KernelLogTrailer::default().to_line();
    assert_eq!(
        end,
        "{\"end\":{\"ended_unix_ns\":0,\"lost_events\":0,\"read_failures\":0,\"decode_errors\":0}}\n"
    );
    assert!(matches!(meta_line(end.as_bytes()), Some(Meta::Trailer(_))));
}
