//! The finished connection table, indexed by cookie and by 4-tuple for the join.
use std::{collections::BTreeMap, net::SocketAddr};

// Keys are kernel addresses, cookies and tuples, hashed per event on the hot path:
// foldhash instead of SipHash (a third of the reader's CPU under churn, by perf).
use foldhash::HashMap;

use super::{
    ConnTable, TableCounts, Tuple,
    record::{ConnRecord, End, JoinKind, ListenerRecord, Role},
};

/// Every kept connection record after recording stopped, with the indexes the join and
/// the rules use. Made by [`ConnTable::finish`].
#[derive(Debug, Default)]
pub struct Connections {
    records: BTreeMap<u64, ConnRecord>,
    by_cookie: HashMap<u64, Vec<u64>>,
    by_tuple: HashMap<Tuple, Vec<u64>>,
    listeners: BTreeMap<SocketAddr, ListenerRecord>,
    drop_reasons: BTreeMap<String, u64>,
    counts: TableCounts,
}

impl Connections {
    pub(crate) fn new(
        records: BTreeMap<u64, ConnRecord>,
        listeners: BTreeMap<SocketAddr, ListenerRecord>,
        drop_reasons: BTreeMap<String, u64>,
        counts: TableCounts,
    ) -> Self {
        let mut by_cookie: HashMap<u64, Vec<u64>> = HashMap::default();
        let mut by_tuple: HashMap<Tuple, Vec<u64>> = HashMap::default();
        for r in records.values() {
            if let Some(c) = r.sock_cookie {
                by_cookie.entry(c).or_default().push(r.id);
            }
            if let Some(t) = r.tuple() {
                by_tuple.entry(t).or_default().push(r.id);
            }
        }
        Self {
            records,
            by_cookie,
            by_tuple,
            listeners,
            drop_reasons,
            counts,
        }
    }

    pub fn get(&self, id: u64) -> Option<&ConnRecord> {
        self.records.get(&id)
    }

    /// Every record, by id (creation order).
    pub fn records(&self) -> impl Iterator<Item = &ConnRecord> {
        self.records.values()
    }

    /// Every record, mutably, for what is learnt after recording stopped (the
    /// certificate probe's facts). Ids, cookies and tuples are indexed: leave them be.
    pub(crate) fn records_mut(&mut self) -> impl Iterator<Item = &mut ConnRecord> {
        self.records.values_mut()
    }

    pub fn counts(&self) -> &TableCounts {
        &self.counts
    }

    /// Packet drops over the run, by the kernel's reason name.
    pub fn drop_reasons(&self) -> &BTreeMap<String, u64> {
        &self.drop_reasons
    }

    /// This host's listener that `remote` reaches, if it was seen (loopback, or a
    /// server on the load host).
    pub fn listener_for(&self, remote: SocketAddr) -> Option<&ListenerRecord> {
        self.listeners.get(&remote).or_else(|| {
            self.listeners
                .values()
                .find(|l| l.local.port() == remote.port() && l.local.ip().is_unspecified())
        })
    }

    /// The kernel record for a loadgen connection or request: by cookie when a record
    /// has it; else by 4-tuple among records whose life overlaps `window` (unix ns,
    /// widened by `slack_ns`) and whose cookie, if known, is not a different one.
    /// Server sockets are never candidates.
    pub fn find(
        &self,
        cookie: Option<u64>,
        tuple: Option<Tuple>,
        window: (u64, u64),
        slack_ns: u64,
    ) -> Option<(u64, JoinKind)> {
        let (from, to) = (
            window.0.saturating_sub(slack_ns),
            window.1.saturating_add(slack_ns),
        );
        let distance = |r: &ConnRecord| {
            if r.last_unix_ns < from {
                from - r.last_unix_ns
            } else {
                r.first_unix_ns.saturating_sub(to)
            }
        };
        if let Some(ids) = cookie.and_then(|c| self.by_cookie.get(&c)) {
            // A socket reconnected has one cookie and several records: the nearest in time.
            let best = ids
                .iter()
                .filter_map(|id| self.records.get(id))
                .min_by_key(|r| distance(r));
            if let Some(r) = best {
                return Some((r.id, JoinKind::Cookie));
            }
        }
        let ids = self.by_tuple.get(&tuple?)?;
        ids.iter()
            .filter_map(|id| self.records.get(id))
            .filter(|r| r.role != Role::Server)
            .filter(|r| cookie.is_none() || r.sock_cookie.is_none() || r.sock_cookie == cookie)
            .filter(|r| distance(r) == 0)
            .min_by_key(|r| r.first_unix_ns.abs_diff(window.0))
            .map(|r| (r.id, JoinKind::TupleTime))
    }

    /// This host's socket at the other end of a loopback connection: the server record
    /// with the reversed tuple whose life overlaps this one's.
    pub fn peer_of(&self, rec: &ConnRecord) -> Option<&ConnRecord> {
        let (l, r) = rec.tuple()?;
        self.by_tuple
            .get(&(r, l))?
            .iter()
            .filter_map(|id| self.records.get(id))
            .filter(|p| p.id != rec.id && p.role != rec.role)
            .find(|p| p.first_unix_ns <= rec.last_unix_ns && rec.first_unix_ns <= p.last_unix_ns)
    }

    /// Marks a record as joined to loadgen connection `conn_id` (a cookie join wins over
    /// a tuple-and-time one).
    pub(crate) fn link(&mut self, id: u64, join: JoinKind, conn_id: u64) {
        let Some(r) = self.records.get_mut(&id) else {
            return;
        };
        if r.join != JoinKind::Cookie {
            r.join = join;
        }
        if conn_id != 0 {
            r.loadgen_conn_id.get_or_insert(conn_id);
        }
    }

    /// Counts a failure on a record and remembers the first failure's cause.
    pub(crate) fn note_failure(&mut self, id: u64, cause: &str, request: bool) {
        if let Some(r) = self.records.get_mut(&id) {
            if request {
                r.failed_requests += 1;
            }
            if r.cause.is_none() {
                r.cause = Some(cause.to_owned());
            }
        }
    }
}

impl ConnTable {
    /// Ends recording: live sockets are summarised as live at the end (kept within the
    /// same limits), and the records are indexed for the join.
    pub fn finish(mut self) -> Connections {
        let live: Vec<u64> = self.live.keys().copied().collect();
        let still_live = live.len() as u64;
        for skaddr in live {
            self.end_live(skaddr, End::LiveAtEnd);
        }
        let counts = TableCounts {
            live: still_live,
            kept: self.kept.len() as u64,
            ..self.counts
        };
        Connections::new(self.kept, self.listener_records, self.drop_reasons, counts)
    }
}
