//! The collector's bookkeeping per event: the `--pid` filter, the counts by kind, and
//! the live counters (open sockets, resets, retransmits, drops).
use std::collections::BTreeMap;

// Keys are kernel addresses, hashed per event on the hot path: foldhash instead of
// SipHash (a third of the reader's CPU under churn, by perf).
use foldhash::HashMap;

use analyzer_common::EventKind;

use crate::{event::KernelEvent, names::TcpState};

/// Live counters since the session started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub resets_rx: u64,
    pub resets_tx: u64,
    pub retrans: u64,
    pub syn_retrans: u64,
    pub drops: u64,
}

/// What the collector counts as events pass.
#[derive(Debug)]
pub(super) struct Tally {
    /// Keep only sockets this process connected.
    pid: Option<u32>,
    /// The connecting pid of each socket seen entering SYN_SENT.
    pids: HashMap<u64, u32>,
    pub pid_filtered: u64,
    pub live: Counters,
    /// Counted by kind value on the hot path; named once at the end.
    kind_counts: [u64; EventKind::ALL.len() + 1],
    open_sockets: HashMap<u64, ()>,
    pub wire_events: u64,
}

impl Tally {
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pid,
            pids: HashMap::default(),
            pid_filtered: 0,
            live: Counters::default(),
            kind_counts: [0; EventKind::ALL.len() + 1],
            open_sockets: HashMap::default(),
            wire_events: 0,
        }
    }

    /// Counts a kernel event; false when the pid filter leaves it out.
    pub fn keep(&mut self, ev: &KernelEvent) -> bool {
        if let Some(want) = self.pid {
            if ev.event == EventKind::StateChange && ev.new_state == Some(TcpState::SynSent) {
                self.pids.insert(ev.skaddr, ev.pid);
            }
            let keep = self.pids.get(&ev.skaddr).is_some_and(|p| *p == want);
            if ev.event == EventKind::DestroySock {
                self.pids.remove(&ev.skaddr);
            }
            if !keep {
                self.pid_filtered += 1;
                return false;
            }
        }
        self.count(ev);
        let n = self.kind_counts.len();
        self.kind_counts[ev.event as usize % n] += 1;
        true
    }

    fn count(&mut self, ev: &KernelEvent) {
        let live = &mut self.live;
        live.events += 1;
        match ev.event {
            EventKind::ReceiveReset => live.resets_rx += 1,
            EventKind::SendReset => live.resets_tx += 1,
            EventKind::Retransmit => {
                live.retrans += 1;
                if ev.state == Some(TcpState::SynSent) {
                    live.syn_retrans += 1;
                }
            }
            EventKind::Drop => live.drops += 1,
            EventKind::DestroySock => {
                self.open_sockets.remove(&ev.skaddr);
            }
            EventKind::StateChange if ev.skaddr != 0 => {
                if ev.new_state == Some(TcpState::Close) {
                    self.open_sockets.remove(&ev.skaddr);
                } else {
                    self.open_sockets.insert(ev.skaddr, ());
                }
            }
            _ => {}
        }
    }

    /// Sockets seen open and not yet closed.
    pub fn open_sockets(&self) -> usize {
        self.open_sockets.len()
    }

    /// Events by the kind's JSON name.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        EventKind::ALL
            .into_iter()
            .filter(|k| self.kind_counts[*k as usize] > 0)
            .map(|k| (kind_name(k), self.kind_counts[k as usize]))
            .collect()
    }
}

/// The snake_case name of an event kind, as in the JSON.
fn kind_name(k: EventKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{k:?}"))
}
