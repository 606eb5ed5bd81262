//! Joining loadgen's NDJSON events to the kernel's connection records.
//!
//! Exact join: loadgen stamps every connection and request with the socket's
//! `SO_COOKIE`, which `tcp_receive_reset` and `tcp_destroy_sock` carry too. Where no
//! kernel record has the cookie (a loadgen event without one, or a record whose cookie
//! was never seen), the join falls back to the 4-tuple AND a time window: the kernel
//! record's life must overlap the request's (or connection's) time, give or take the
//! slack (1 s by default). 4-tuples are reused under load: never join on the tuple
//! alone, and never to a record whose known cookie differs.
//!
//! Files are streamed twice, line by line: first the connection lines (TLS facts,
//! HTTP/2 frames, which kernel record each connection is), then the request lines, each
//! failed request handed to the caller with everything known about it. Memory stays
//! bounded by the connections open at once plus the notable ones (TLS failures, GOAWAY,
//! RST_STREAM), themselves capped.
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
};

use events::{
    model::{
        Class, CloseHow, ConnEvent, ConnStep, EventLine, FrameFacts, GoAway, Proto, RequestEvent,
        TlsFacts, precise_event_error,
    },
    ndjson::{FileInfo, NdjsonLines, ReadError},
    time::parse_unix_ns,
};
use serde::{Deserialize, Serialize};

use crate::table::{Connections, JoinKind};

#[cfg(test)]
pub(crate) mod tests;

/// What loadgen's connection lines said about one connection, kept for the rules when
/// it matters (a failed TLS handshake, a GOAWAY, RST_STREAMs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadgenConn {
    pub conn_id: u64,
    pub sock_cookie: Option<u64>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub opened_unix_ns: u64,
    pub closed_unix_ns: Option<u64>,
    pub proto: Option<Proto>,
    /// The TLS facts of a failed handshake (SNI, certificate presented, error).
    pub tls: Option<TlsFacts>,
    /// The server's last SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: Option<u32>,
    /// The first GOAWAY the server sent.
    pub goaway: Option<GoAway>,
    /// RST_STREAM frames the server sent.
    pub rst_streams: u32,
    /// The most streams in flight (each counting itself) among the requests a GOAWAY
    /// ended on this connection; 0 when none.
    pub max_streams_in_flight: u32,
    pub closed: Option<CloseHow>,
    /// Requests completed on the connection (from its `closed` line).
    pub requests: u64,
}

impl LoadgenConn {
    fn notable(&self) -> bool {
        self.tls.is_some() || self.goaway.is_some() || self.rst_streams > 0
    }
}

/// One failed loadgen request, with what the join found for it.
#[derive(Debug)]
pub struct LoadgenFailure<'a> {
    pub request: &'a RequestEvent,
    /// The intended send time (unix ns).
    pub intended_unix_ns: u64,
    /// loadgen's connection facts, when notable.
    pub conn: Option<&'a LoadgenConn>,
    /// The kernel record's id in [`Connections`].
    pub kernel: Option<u64>,
    /// `cookie`, `tuple_time` or `loadgen_only`.
    pub join: JoinKind,
}

/// What the loadgen files held.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenSummary {
    pub files: Vec<FileInfo>,
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Failed requests by loadgen class (`unclassified` for a failure without one).
    pub failed_by_class: BTreeMap<String, u64>,
    /// loadgen connections seen (from `opened` lines).
    pub connections: u64,
    /// loadgen connections joined to a kernel record by cookie / by tuple and time.
    pub connections_joined_cookie: u64,
    pub connections_joined_tuple_time: u64,
    /// Failed requests joined by cookie / tuple and time / to no kernel record.
    pub failures_joined_cookie: u64,
    pub failures_joined_tuple_time: u64,
    pub failures_loadgen_only: u64,
    /// Notable connections not kept (beyond the cap): their failures lose TLS / frame facts.
    pub notable_connections_dropped: u64,
    /// The earliest intended send time and the latest end of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_unix_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unix_ns: Option<u64>,
    /// Problems that did not stop the join (a truncated last line).
    pub warnings: Vec<String>,
}

/// Notable loadgen connections kept for the rules.
const MAX_NOTABLE_CONNS: usize = 200_000;

type ConnKey = (usize, u64);

/// Streams loadgen event files and joins them to `conns`: links every loadgen
/// connection to its kernel record, then calls `on_failure` for each failed request.
pub fn join_loadgen(
    paths: &[PathBuf],
    conns: &mut Connections,
    slack_ns: u64,
    on_failure: impl FnMut(&mut Connections, LoadgenFailure<'_>),
) -> Result<LoadgenSummary, ReadError> {
    let mut summary = LoadgenSummary::default();
    let mut pass1 = ConnPass {
        conns: &mut *conns,
        slack_ns,
        open: HashMap::new(),
        notable: HashMap::new(),
        goaway_inflight: HashMap::new(),
        summary: &mut summary,
    };
    for (file, path) in paths.iter().enumerate() {
        let mut lines = NdjsonLines::open(path)?;
        while let Some(bytes) = lines.next_line()? {
            // Connection lines, and requests a GOAWAY ended (for the streams in flight
            // on their connection); the other request lines wait for the second pass.
            if !contains(bytes, b"\"conn\"") && !contains(bytes, b"\"h2_goaway\"") {
                continue;
            }
            match serde_json::from_slice::<EventLine>(bytes) {
                Ok(EventLine::Conn(ev)) => {
                    let ts = timestamp(&lines, &ev.timestamp)?;
                    pass1.on_conn(file, &ev, ts);
                }
                Ok(EventLine::Request(r)) => {
                    if r.class == Some(Class::H2Goaway) && r.conn.conn_id != 0 {
                        let n = pass1
                            .goaway_inflight
                            .entry((file, r.conn.conn_id))
                            .or_default();
                        *n = (*n).max(r.conn.inflight + 1);
                    }
                }
                Err(e) => lines.bad_line(e, "loadgen event", precise_event_error)?,
            }
        }
    }
    let open: Vec<(ConnKey, LoadgenConn)> = pass1.open.drain().collect();
    for ((file, _), c) in open {
        pass1.close(file, c);
    }
    let mut notable = std::mem::take(&mut pass1.notable);
    for (key, n) in pass1.goaway_inflight.drain() {
        if let Some(c) = notable.get_mut(&key) {
            c.max_streams_in_flight = n;
        } else if notable.len() < MAX_NOTABLE_CONNS {
            notable.insert(
                key,
                LoadgenConn {
                    conn_id: key.1,
                    max_streams_in_flight: n,
                    ..LoadgenConn::default()
                },
            );
        }
    }

    request_pass(paths, conns, slack_ns, &notable, &mut summary, on_failure)?;
    Ok(summary)
}

/// The second pass: request lines, each failed one joined and handed to `on_failure`.
fn request_pass(
    paths: &[PathBuf],
    conns: &mut Connections,
    slack_ns: u64,
    notable: &HashMap<ConnKey, LoadgenConn>,
    summary: &mut LoadgenSummary,
    mut on_failure: impl FnMut(&mut Connections, LoadgenFailure<'_>),
) -> Result<(), ReadError> {
    for (file, path) in paths.iter().enumerate() {
        let mut lines = NdjsonLines::open(path)?;
        while let Some(bytes) = lines.next_line()? {
            let ev = match serde_json::from_slice::<EventLine>(bytes) {
                Ok(EventLine::Request(ev)) => ev,
                Ok(EventLine::Conn(_)) => continue,
                Err(e) => {
                    lines.bad_line(e, "loadgen event", precise_event_error)?;
                    continue;
                }
            };
            let intended = timestamp(&lines, &ev.timestamp)?;
            let end = intended.saturating_add(ev.latency);
            summary.requests += 1;
            summary.first_unix_ns =
                Some(summary.first_unix_ns.map_or(intended, |f| f.min(intended)));
            summary.last_unix_ns = Some(summary.last_unix_ns.map_or(end, |l| l.max(end)));
            if ev.class.is_none() && ev.error.is_empty() {
                summary.requests_ok += 1;
                continue;
            }
            summary.requests_failed += 1;
            let class = ev.class.map_or("unclassified", Class::as_str);
            *summary.failed_by_class.entry(class.to_owned()).or_default() += 1;
            let tuple = ev.conn.local.zip(ev.conn.remote);
            let found = conns.find(ev.conn.sock_cookie, tuple, (intended, end), slack_ns);
            let join = found.map_or(JoinKind::LoadgenOnly, |(_, j)| j);
            match join {
                JoinKind::Cookie => summary.failures_joined_cookie += 1,
                JoinKind::TupleTime => summary.failures_joined_tuple_time += 1,
                _ => summary.failures_loadgen_only += 1,
            }
            if let Some((id, j)) = found {
                conns.link(id, j, ev.conn.conn_id);
            }
            let conn = (ev.conn.conn_id != 0)
                .then(|| notable.get(&(file, ev.conn.conn_id)))
                .flatten();
            on_failure(
                conns,
                LoadgenFailure {
                    request: &ev,
                    intended_unix_ns: intended,
                    conn,
                    kernel: found.map(|(id, _)| id),
                    join,
                },
            );
        }
        summary.warnings.append(&mut lines.warnings);
        summary.files.push(lines.info);
    }
    Ok(())
}

/// The first pass: connection lines.
struct ConnPass<'a> {
    conns: &'a mut Connections,
    slack_ns: u64,
    open: HashMap<ConnKey, LoadgenConn>,
    notable: HashMap<ConnKey, LoadgenConn>,
    /// The most streams in flight among requests a GOAWAY ended, per connection.
    goaway_inflight: HashMap<ConnKey, u32>,
    summary: &'a mut LoadgenSummary,
}

impl ConnPass<'_> {
    fn on_conn(&mut self, file: usize, ev: &ConnEvent, ts: u64) {
        let key = (file, ev.conn_id);
        let c = self.open.entry(key).or_insert_with(|| LoadgenConn {
            conn_id: ev.conn_id,
            opened_unix_ns: ts,
            ..LoadgenConn::default()
        });
        match &ev.step {
            ConnStep::Opened {
                sock_cookie,
                local,
                remote,
                ..
            } => {
                self.summary.connections += 1;
                c.sock_cookie = *sock_cookie;
                c.local = *local;
                c.remote = Some(*remote);
                c.opened_unix_ns = ts;
            }
            ConnStep::Tls { tls, .. } => {
                if tls.error.is_some() {
                    c.tls = Some(tls.clone());
                }
            }
            ConnStep::Ready { proto } => c.proto = Some(*proto),
            ConnStep::Frame { frame } => match frame {
                FrameFacts::Settings { settings } => {
                    if let Some((_, v)) = settings
                        .iter()
                        .rev()
                        .find(|(name, _)| name == "SETTINGS_MAX_CONCURRENT_STREAMS")
                    {
                        c.max_concurrent_streams = Some(*v);
                    }
                }
                FrameFacts::Goaway(g) => {
                    c.goaway.get_or_insert_with(|| g.clone());
                }
                FrameFacts::RstStream { .. } => c.rst_streams += 1,
                FrameFacts::Ping { .. } => {}
            },
            ConnStep::Closed { how, requests, .. } => {
                c.closed = Some(*how);
                c.closed_unix_ns = Some(ts);
                c.requests = *requests;
                let c = self.open.remove(&key).expect("entry made above");
                self.close(file, c);
            }
        }
    }

    /// The connection is over (or the files are): link it, keep it if notable.
    fn close(&mut self, file: usize, c: LoadgenConn) {
        let end = c.closed_unix_ns.unwrap_or(u64::MAX);
        let tuple = c.local.zip(c.remote);
        if let Some((id, join)) =
            self.conns
                .find(c.sock_cookie, tuple, (c.opened_unix_ns, end), self.slack_ns)
        {
            match join {
                JoinKind::Cookie => self.summary.connections_joined_cookie += 1,
                _ => self.summary.connections_joined_tuple_time += 1,
            }
            self.conns.link(id, join, c.conn_id);
        }
        if c.notable() {
            if self.notable.len() < MAX_NOTABLE_CONNS {
                self.notable.insert((file, c.conn_id), c);
            } else {
                self.summary.notable_connections_dropped += 1;
            }
        }
    }
}

fn timestamp(lines: &NdjsonLines, value: &str) -> Result<u64, ReadError> {
    parse_unix_ns(value).ok_or_else(|| ReadError::Timestamp {
        path: lines.path().to_owned(),
        line: lines.line(),
        value: value.to_owned(),
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
