//! The connection table: kernel events, in timestamp order, folded into one record per
//! TCP socket, with memory bounded however long the run.
//!
//! A socket is keyed by its kernel address (`skaddr`) while it lives; its `SO_COOKIE` is
//! learned from the events that carry it (`receive_reset`, `destroy_sock`).
//! `destroy_sock` ends the socket's life, and so does a transition that only a new socket
//! makes (CLOSE→SYN_SENT, LISTEN→SYN_RECV): slab addresses are reused. Events without a
//! socket (an RST answering a SYN for a closed port, `error_report`) are attached by
//! 4-tuple to the live socket with that tuple (at one instant a tuple is unique among
//! live sockets), or to this host's socket at the other end of a loopback connection
//! (marked `peer`), else kept for a while as orphan evidence until a socket with that
//! tuple shows up.
//!
//! Closed sockets are summarised: failed and abnormal ones are kept (at most
//! [`TableConfig::max_closed`], failed ones preferred, evictions counted); clean ones are
//! only counted unless [`TableConfig::keep_all`]. [`ConnTable::finish`] turns the table
//! into the indexed, read-only [`Connections`] the join uses.
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
};

// Keys are kernel addresses, cookies and tuples, hashed per event on the hot path:
// foldhash instead of SipHash (a third of the reader's CPU under churn, by perf).
use foldhash::HashMap;

use analyzer_common::EventKind;

use crate::{event::KernelEvent, names::TcpState};

mod index;
mod record;
pub use index::Connections;
pub use record::{
    Closer, ConnRecord, End, JoinKind, ListenerRecord, ResetSent, Role, TimelineEntry,
};

/// A connection's 4-tuple, `(local, remote)`.
pub type Tuple = (SocketAddr, SocketAddr);

/// Limits and knowledge the table starts with.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Closed connections kept as summaries (failed ones preferred).
    pub max_closed: usize,
    /// Live sockets tracked; beyond it the stalest are summarised (a destroy was lost).
    pub max_live: usize,
    /// Timeline entries per connection (first half and last half are kept).
    pub max_timeline: usize,
    /// Keep clean connections too (`--all`), within `max_closed`.
    pub keep_all: bool,
    /// Ports known to listen on this host (a socket on one of them is a server).
    pub listen_ports: Vec<u16>,
    /// The ephemeral port range: a socket of unknown role whose local port is in it,
    /// and whose remote port is not, is a client.
    pub ephemeral_ports: (u16, u16),
    /// 4-tuples of socketless events waiting for a socket.
    pub max_orphans: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            max_closed: 100_000,
            max_live: 1_000_000,
            max_timeline: 64,
            keep_all: false,
            listen_ports: Vec::new(),
            ephemeral_ports: (32768, 60999),
            max_orphans: 4096,
        }
    }
}

/// What the table has seen: the live counters of `attach` and the report's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableCounts {
    /// Socket records created.
    pub tracked: u64,
    /// Sockets alive now (at the end: still alive when recording stopped).
    pub live: u64,
    /// Records that ended (destroyed, replaced, or summarised early).
    pub closed: u64,
    /// Closed records kept as summaries now.
    pub kept: u64,
    /// Clean closed connections, counted and not kept.
    pub closed_clean: u64,
    /// Kept summaries dropped to stay within the limit.
    pub evicted: u64,
    /// Live records summarised early because the live limit was reached.
    pub live_evicted: u64,
    /// Listening sockets seen.
    pub listeners: u64,
    /// Kernel events by kind.
    pub events: BTreeMap<EventKind, u64>,
    /// Events that named no socket the table knows and no tuple (e.g. drops on an
    /// unknown socket).
    pub untracked_events: u64,
    /// Socketless events that found no socket by tuple (orphans).
    pub orphan_events: u64,
    /// Orphan events later attached to a socket with their tuple.
    pub orphans_adopted: u64,
}

/// The connection table. Feed it with [`ConnTable::ingest`]; finish with
/// [`ConnTable::finish`].
#[derive(Debug)]
pub struct ConnTable {
    cfg: TableConfig,
    next_id: u64,
    live: HashMap<u64, ConnRecord>,
    live_by_tuple: HashMap<Tuple, u64>,
    kept: BTreeMap<u64, ConnRecord>,
    kept_failed: VecDeque<u64>,
    kept_other: VecDeque<u64>,
    listeners: HashMap<u64, SocketAddr>,
    listener_records: BTreeMap<SocketAddr, ListenerRecord>,
    /// Local ports of listeners and of server sockets seen.
    server_ports: BTreeSet<u16>,
    orphans: HashMap<Tuple, Vec<KernelEvent>>,
    orphan_order: VecDeque<Tuple>,
    drop_reasons: BTreeMap<String, u64>,
    counts: TableCounts,
}

/// Socketless events kept per orphan tuple.
const ORPHAN_EVENTS_PER_TUPLE: usize = 8;
/// An orphan older than this before a socket's first event belongs to an earlier one.
const ORPHAN_ADOPT_SLACK_NS: u64 = 1_000_000_000;

impl ConnTable {
    pub fn new(cfg: TableConfig) -> Self {
        Self {
            cfg,
            next_id: 1,
            live: HashMap::default(),
            live_by_tuple: HashMap::default(),
            kept: BTreeMap::new(),
            kept_failed: VecDeque::new(),
            kept_other: VecDeque::new(),
            listeners: HashMap::default(),
            listener_records: BTreeMap::new(),
            server_ports: BTreeSet::new(),
            orphans: HashMap::default(),
            orphan_order: VecDeque::new(),
            drop_reasons: BTreeMap::new(),
            counts: TableCounts::default(),
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> TableCounts {
        TableCounts {
            live: self.live.len() as u64,
            kept: self.kept.len() as u64,
            ..self.counts.clone()
        }
    }

    /// The live record of a socket (tests, live displays).
    #[cfg(test)]
    pub fn live(&self, skaddr: u64) -> Option<&ConnRecord> {
        self.live.get(&skaddr)
    }

    /// Keeps a wire fact (raw backend) on its connection's live record: by the synthetic
    /// socket address, else by the client's 4-tuple. A fact for no live record is
    /// counted as untracked.
    pub fn ingest_wire(&mut self, w: &crate::event::wire_fact::WireEvent) {
        let key = if self.live.contains_key(&w.skaddr) {
            Some(w.skaddr)
        } else {
            self.live_by_tuple
                .get(&(w.client, w.server))
                .or_else(|| self.live_by_tuple.get(&(w.server, w.client)))
                .copied()
        };
        match key.and_then(|k| self.live.get_mut(&k)) {
            Some(rec) => rec.add_wire(w),
            None => self.counts.untracked_events += 1,
        }
    }

    /// Folds one event into the table. Events should come in timestamp order; a little
    /// disorder (between CPUs) only blurs the order inside a timeline.
    pub fn ingest(&mut self, ev: &KernelEvent) {
        *self.counts.events.entry(ev.event).or_default() += 1;
        match ev.event {
            EventKind::Drop => self.on_drop(ev),
            EventKind::StateChange => self.on_state_change(ev),
            EventKind::ErrorReport => self.by_tuple(ev, false),
            // An RST for no socket (skaddr 0), or from a socket the table never saw
            // (a TIME_WAIT socket is not a full socket and makes no state changes).
            EventKind::SendReset if !self.live.contains_key(&ev.skaddr) => {
                self.by_tuple(ev, ev.skaddr != 0);
            }
            _ if ev.skaddr == 0 => self.by_tuple(ev, false),
            _ => {
                let max = self.cfg.max_timeline;
                self.record_for(ev, false).apply(ev, false, max);
                self.after_apply(ev);
                if ev.event == EventKind::ReceiveReset {
                    self.note_peer_at_rst(ev.skaddr);
                }
            }
        }
    }

    fn on_drop(&mut self, ev: &KernelEvent) {
        let reason = ev.reason.clone().unwrap_or_else(|| "unknown".into());
        *self.drop_reasons.entry(reason.clone()).or_default() += 1;
        if let Some(rec) = self.live.get_mut(&ev.skaddr) {
            rec.apply(ev, false, self.cfg.max_timeline);
        } else if let Some(addr) = self.listeners.get(&ev.skaddr) {
            let l = self
                .listener_records
                .get_mut(addr)
                .expect("listener has a record");
            *l.drops.entry(reason).or_default() += 1;
        } else {
            self.counts.untracked_events += 1;
        }
    }

    fn on_state_change(&mut self, ev: &KernelEvent) {
        use TcpState::{Close, Listen, SynRecv, SynSent};
        match (ev.state, ev.new_state) {
            (_, Some(Listen)) => {
                self.end_live(ev.skaddr, End::Replaced);
                if let Some(local) = ev.local {
                    self.server_ports.insert(local.port());
                    self.listeners.insert(ev.skaddr, local);
                    self.counts.listeners += 1;
                    self.listener_records
                        .entry(local)
                        .or_insert_with(|| ListenerRecord {
                            local,
                            since_unix_ns: ev.ts_unix_ns,
                            drops: BTreeMap::new(),
                        });
                }
                return;
            }
            (Some(Listen), Some(Close)) => {
                self.listeners.remove(&ev.skaddr);
                return;
            }
            _ => {}
        }
        let fresh = matches!(
            (ev.state, ev.new_state),
            (Some(Close), Some(SynSent)) | (Some(Listen), Some(SynRecv))
        );
        let max = self.cfg.max_timeline;
        self.record_for(ev, fresh).apply(ev, false, max);
        if ev.new_state == Some(SynRecv)
            && let Some(l) = ev.local
        {
            self.server_ports.insert(l.port());
        }
        self.after_apply(ev);
    }

    /// The live record at `ev.skaddr`, a new one when none lives there or `fresh`.
    fn record_for(&mut self, ev: &KernelEvent, fresh: bool) -> &mut ConnRecord {
        if fresh {
            self.end_live(ev.skaddr, End::Replaced);
        }
        if !self.live.contains_key(&ev.skaddr) {
            self.listeners.remove(&ev.skaddr);
            let id = self.next_id;
            self.next_id += 1;
            self.counts.tracked += 1;
            self.live
                .insert(ev.skaddr, ConnRecord::new(id, ev.skaddr, ev.ts_unix_ns));
            if self.live.len() > self.cfg.max_live {
                self.shed_stale_live(ev.skaddr);
            }
        }
        self.live.get_mut(&ev.skaddr).expect("inserted above")
    }

    /// After an event on a live socket: index its tuple, adopt orphans, end it if the
    /// event was its destruction.
    /// Marks whether this host's socket at the other end of `skaddr`'s connection was
    /// open and traced when its first RST arrived (see `KernelFacts::rst_peer_traced`).
    fn note_peer_at_rst(&mut self, skaddr: u64) {
        let Some((l, r)) = self.live.get(&skaddr).and_then(ConnRecord::tuple) else {
            return;
        };
        let traced = self
            .live_by_tuple
            .get(&(r, l))
            .is_some_and(|s| *s != skaddr);
        if let Some(rec) = self.live.get_mut(&skaddr)
            && rec.facts.rst_received == 1
        {
            rec.facts.rst_peer_traced = traced;
        }
    }

    fn after_apply(&mut self, ev: &KernelEvent) {
        let Some(rec) = self.live.get(&ev.skaddr) else {
            return;
        };
        if let Some(t) = rec.tuple().filter(|(l, r)| l.port() != 0 && r.port() != 0)
            && self.live_by_tuple.get(&t) != Some(&ev.skaddr)
        {
            self.live_by_tuple.insert(t, ev.skaddr);
            self.adopt_orphans(ev.skaddr, t);
        }
        if ev.event == EventKind::DestroySock {
            self.end_live(ev.skaddr, End::Destroyed);
        }
    }

    /// A socketless event: to the live socket with its tuple, or to this host's socket
    /// at the other end (loopback), or to a new record when the event names an unknown
    /// socket (`new_socket`), else an orphan.
    fn by_tuple(&mut self, ev: &KernelEvent, new_socket: bool) {
        let Some(t) = ev.local.zip(ev.remote) else {
            self.counts.untracked_events += 1;
            return;
        };
        let max = self.cfg.max_timeline;
        if let Some(rec) = self
            .live_by_tuple
            .get(&t)
            .and_then(|s| self.live.get_mut(s))
        {
            rec.apply(ev, false, max);
        } else if let Some(rec) = self
            .live_by_tuple
            .get(&(t.1, t.0))
            .and_then(|s| self.live.get_mut(s))
        {
            rec.apply(ev, true, max);
        } else if new_socket {
            let rec = self.record_for(ev, false);
            rec.apply(ev, false, max);
            self.after_apply(ev);
        } else {
            self.counts.orphan_events += 1;
            let list = self.orphans.entry(t).or_insert_with(|| {
                self.orphan_order.push_back(t);
                Vec::new()
            });
            if list.len() < ORPHAN_EVENTS_PER_TUPLE {
                list.push(ev.clone());
            }
            while self.orphan_order.len() > self.cfg.max_orphans {
                if let Some(old) = self.orphan_order.pop_front() {
                    self.orphans.remove(&old);
                }
            }
        }
    }

    fn adopt_orphans(&mut self, skaddr: u64, t: Tuple) {
        let max = self.cfg.max_timeline;
        let Some(rec) = self.live.get_mut(&skaddr) else {
            return;
        };
        let since = rec.first_unix_ns.saturating_sub(ORPHAN_ADOPT_SLACK_NS);
        for (key, peer) in [(t, false), ((t.1, t.0), true)] {
            let Some(list) = self.orphans.remove(&key) else {
                continue;
            };
            let (mine, older): (Vec<_>, Vec<_>) =
                list.into_iter().partition(|e| e.ts_unix_ns >= since);
            for e in &mine {
                rec.apply(e, peer, max);
                self.counts.orphans_adopted += 1;
            }
            if !older.is_empty() {
                self.orphans.insert(key, older);
            }
        }
        // Adopted late: keep the timeline in time order.
        rec.timeline.sort_by_key(|e| e.ts_unix_ns);
    }

    /// Ends the live record at `skaddr`, if any, and summarises it.
    fn end_live(&mut self, skaddr: u64, end: End) {
        let Some(mut rec) = self.live.remove(&skaddr) else {
            return;
        };
        if let Some(t) = rec.tuple()
            && self.live_by_tuple.get(&t) == Some(&skaddr)
        {
            self.live_by_tuple.remove(&t);
        }
        rec.end = end;
        self.counts.closed += 1;
        self.summarise(rec);
    }

    /// The live limit was passed: summarise the eighth of live records quiet longest.
    fn shed_stale_live(&mut self, keep: u64) {
        let mut by_age: Vec<(u64, u64)> = self
            .live
            .iter()
            .filter(|(s, _)| **s != keep)
            .map(|(s, r)| (r.last_unix_ns, *s))
            .collect();
        by_age.sort_unstable();
        let n = (self.live.len() / 8).max(1);
        for (_, skaddr) in by_age.into_iter().take(n) {
            self.counts.live_evicted += 1;
            self.end_live(skaddr, End::Stale);
        }
    }

    /// Keeps a closed record within the limit, failed ones first.
    fn summarise(&mut self, mut rec: ConnRecord) {
        rec.resolve_role(&self.cfg, &self.server_ports);
        if rec.role == Role::Server
            && let Some(l) = rec.local
        {
            self.server_ports.insert(l.port());
        }
        let failed = rec.is_failed();
        if !failed && !rec.is_notable() && !self.cfg.keep_all {
            self.counts.closed_clean += 1;
            return;
        }
        if self.cfg.max_closed == 0 {
            self.counts.evicted += 1;
            return;
        }
        if self.kept.len() >= self.cfg.max_closed {
            let victim = if let Some(id) = self.kept_other.pop_front() {
                id
            } else if failed {
                self.kept_failed
                    .pop_front()
                    .expect("the table is full of failed records")
            } else {
                // Full of failed records: this one goes.
                self.counts.evicted += 1;
                return;
            };
            self.kept.remove(&victim);
            self.counts.evicted += 1;
        }
        let queue = if failed {
            &mut self.kept_failed
        } else {
            &mut self.kept_other
        };
        queue.push_back(rec.id);
        self.kept.insert(rec.id, rec);
    }
}

#[cfg(test)]
mod tests;
