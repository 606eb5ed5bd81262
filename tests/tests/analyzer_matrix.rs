//! The fault × client × backend matrix: every testbed fault driven by each foreign client
//! (curl over HTTP/1.1, h2 and h2c, nghttp, h2load, Python's http.client, a stripped Go
//! client) under `analyzer attach`'s library session, on the eBPF backend and, for the
//! cleartext clients, the raw backend too. What each cell must say is data ([`ROWS`]):
//! the cause (or none, or unknown where the evidence cannot decide), the count where the
//! protocol makes it exact, a note; the assertions come from it, and README.md's table
//! "Which client, which fault, which cause" is rendered from it
//! (`readme_matrix_is_the_tests_data`; `FAULTLINE_BLESS=1` rewrites it).
//!
//! One test per column (client and backend), so columns run in parallel and a failure
//! names its client. An eBPF session costs seconds to attach and detach (BTF, 28 probes,
//! an RCU grace period per tracepoint released), so a column does not get a session per
//! fault: its faults share a few sessions, each recording all their ports, and each
//! fault's answer is the part of the report whose examples are on its port. Faults
//! expected to give the same cause never share a session ([`sessions`]), so every
//! cause of a report belongs to one port; a cause spread over two ports is a failure of
//! both cells. Connections of other ports that the eBPF backend lets into a session
//! (it can go on tracking a kernel socket address after its socket is gone) are shown,
//! and only loosen a count to "at least". Rows marked `known_wrong` are run and shown,
//! not asserted. `FAULTLINE_MATRIX_FAULT=stall` runs only the faults whose spec holds
//! `stall`. Needs root and the clients `cargo xtask setup` installs.
mod analyzer_support;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{PoisonError, RwLock},
    time::Duration,
};

use analyzer::{attach::Backend, tls_probe::ProbeOptions};
use analyzer_support::Session;
use serde_json::Value;
use testbed::{
    Config, Testbed,
    foreign::{self, GoClient, PythonGet},
};

use Client::{
    CurlH1, CurlH1Tls, CurlH2Tls, CurlH2c, Go, H2load, NghttpH2c, NghttpTls, Python, PythonTls,
};
use Via::{Ebpf, Raw};

/// The faults, in the README table's order.
const FAULTS: &[&str] = &[
    "ok",
    "status:503",
    "wrong-cert",
    "untrusted-cert",
    "expired-cert",
    "goaway:ENHANCE_YOUR_CALM:after=0",
    "goaway-on-concurrency:1",
    "rst-stream:INTERNAL_ERROR",
    "rst:after=0",
    "rst-mid-response",
    "fin-mid-response",
    "close-idle:500ms",
    "stall",
    "slow:500ms",
    "backlog-full",
    "refused",
];

/// A foreign client, as the test runs it (see [`drive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// `curl --http1.1`, two URLs on one keep-alive connection.
    CurlH1,
    /// The same over TLS.
    CurlH1Tls,
    /// curl over TLS, h2 by ALPN (curl's default with https), two URLs.
    CurlH2Tls,
    /// `curl --http2-prior-knowledge`, one run per request (curl 7.88 fails its second
    /// transfer on a reused h2c connection before sending it).
    CurlH2c,
    /// `nghttp -v`, two paths as two concurrent streams of one connection.
    NghttpH2c,
    /// The same over TLS (nghttp warns about a certificate it cannot verify, and goes on).
    NghttpTls,
    /// `h2load -n 3 -c 1 -m 3` over h2c.
    H2load,
    /// Python's `http.client`, one process per request.
    Python,
    /// The same over `ssl`.
    PythonTls,
    /// The stripped Go client (net/http, HTTP/2 over TLS), probed with `--tls-exe`.
    Go,
}

/// The backend of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Ebpf,
    Raw,
}

/// The README table's columns, in order, with their headings.
const COLUMNS: &[(Client, Via, &str)] = &[
    (CurlH1, Ebpf, "curl HTTP/1.1"),
    (CurlH1, Raw, "curl HTTP/1.1, raw"),
    (CurlH1Tls, Ebpf, "curl HTTP/1.1 TLS"),
    (CurlH2Tls, Ebpf, "curl h2 TLS"),
    (CurlH2c, Ebpf, "curl h2c"),
    (CurlH2c, Raw, "curl h2c, raw"),
    (NghttpH2c, Ebpf, "nghttp h2c"),
    (NghttpTls, Ebpf, "nghttp TLS"),
    (H2load, Ebpf, "h2load h2c"),
    (H2load, Raw, "h2load h2c, raw"),
    (Python, Ebpf, "Python"),
    (PythonTls, Ebpf, "Python TLS"),
    (Go, Ebpf, "Go h2 TLS"),
];

/// What a cell must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Every request succeeded: no cause, no failure.
    NoFailure,
    /// The client failed and the evidence cannot say why: no cause is named.
    #[expect(
        dead_code,
        reason = "no cell is unknown today (every client here is probed); kept for one that is"
    )]
    Unknown,
    /// The top cause: `id`, or `id/detail` to check its detail too.
    Cause(&'static str),
    /// [`Expect::Cause`], or unknown (no cause, failures unattributed) when the client
    /// never read what would tell: the run decides which.
    CauseOrUnknown(&'static str),
}

/// The count of the top cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Count {
    Any,
    /// One per request the client made ([`requests`]).
    PerRequest,
    Exactly(u64),
}

const NONE: Expect = Expect::NoFailure;
const ANY: Count = Count::Any;
const PER_REQ: Count = Count::PerRequest;
const ONE: Count = Count::Exactly(1);

const fn cause(id: &'static str) -> Expect {
    Expect::Cause(id)
}

const fn cause_or_unknown(id: &'static str) -> Expect {
    Expect::CauseOrUnknown(id)
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug)]
struct Row {
    fault: &'static str,
    client: Client,
    backend: Via,
    expect: Expect,
    count: Count,
    note: &'static str,
    /// What the analyzer says today where that is wrong: the row is run and shown, not
    /// asserted, until the analyzer is fixed.
    known_wrong: Option<&'static str>,
}

const fn r(
    fault: &'static str,
    client: Client,
    backend: Via,
    expect: Expect,
    count: Count,
    note: &'static str,
) -> Row {
    Row {
        fault,
        client,
        backend,
        expect,
        count,
        note,
        known_wrong: None,
    }
}

impl Row {
    /// Marks the row wrong today: the analyzer says `says`.
    #[expect(
        dead_code,
        reason = "no cell is known wrong today; kept for the next fault or client that is"
    )]
    const fn wrong(mut self, says: &'static str) -> Row {
        self.known_wrong = Some(says);
        self
    }
}

/// The expected matrix, by column; faults a client cannot meet are left out (certificate
/// faults for cleartext clients, HTTP/2-only faults for HTTP/1.1 clients: they serve 200).
#[rustfmt::skip]
const ROWS: &[Row] = &[
    r("ok",                                CurlH1,    Ebpf, NONE,                                              ANY,     "two 200s"),
    r("status:503",                        CurlH1,    Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH1,    Ebpf, NONE,                                              ANY,     "HTTP/1.1: Connection: close on each answer"),
    r("rst:after=0",                       CurlH1,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH1,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH1,    Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  CurlH1,    Ebpf, NONE,                                              ANY,     "curl sees the idle close and dials anew"),
    r("stall",                             CurlH1,    Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        CurlH1,    Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH1,    Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH1,    Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                CurlH1,    Raw,  NONE,                                              ANY,     "two 200s"),
    r("status:503",                        CurlH1,    Raw,  cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH1,    Raw,  NONE,                                              ANY,     "HTTP/1.1: Connection: close on each answer"),
    r("rst:after=0",                       CurlH1,    Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH1,    Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH1,    Raw,  cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  CurlH1,    Raw,  NONE,                                              ANY,     "curl sees the idle close and dials anew"),
    r("stall",                             CurlH1,    Raw,  cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        CurlH1,    Raw,  NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH1,    Raw,  cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH1,    Raw,  cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                CurlH1Tls, Ebpf, NONE,                                              ANY,     "two 200s"),
    r("status:503",                        CurlH1Tls, Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("wrong-cert",                        CurlH1Tls, Ebpf, cause("tls_cert_mismatch"),                        PER_REQ, "TLS 1.3: the active probe sees the name"),
    r("untrusted-cert",                    CurlH1Tls, Ebpf, cause("tls_cert_untrusted"),                       PER_REQ, "TLS 1.3: the active probe sees the issuer"),
    r("expired-cert",                      CurlH1Tls, Ebpf, cause("tls_cert_expired"),                         PER_REQ, "TLS 1.3: the active probe sees the dates"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH1Tls, Ebpf, NONE,                                              ANY,     "HTTP/1.1: Connection: close on each answer"),
    r("rst:after=0",                       CurlH1Tls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH1Tls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH1Tls, Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "the server's close_notify can end the answer before its FIN: curl then closes first, but its SSL_read returned the end of the server's stream before"),
    r("close-idle:500ms",                  CurlH1Tls, Ebpf, cause("idle_race"),                                ONE,     "over TLS curl misses the idle close, writes its 2nd request after the server's FIN, resends it anew"),
    r("stall",                             CurlH1Tls, Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "curl's close_notify at its timeout: given up, whoever's FIN comes first"),
    r("slow:500ms",                        CurlH1Tls, Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH1Tls, Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH1Tls, Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                CurlH2Tls, Ebpf, NONE,                                              ANY,     "200s"),
    r("status:503",                        CurlH2Tls, Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("wrong-cert",                        CurlH2Tls, Ebpf, cause("tls_cert_mismatch"),                        PER_REQ, "TLS 1.3: the active probe sees the name"),
    r("untrusted-cert",                    CurlH2Tls, Ebpf, cause("tls_cert_untrusted"),                       PER_REQ, "TLS 1.3: the active probe sees the issuer"),
    r("expired-cert",                      CurlH2Tls, Ebpf, cause("tls_cert_expired"),                         PER_REQ, "TLS 1.3: the active probe sees the dates"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH2Tls, Ebpf, cause_or_unknown("h2_goaway_enhance_your_calm"),   ANY,     "curl may write its request into the server's GOAWAY and close (EPIPE) and never read the GOAWAY: that connection is unknown (the server's bytes unread), not a server close"),
    r("goaway-on-concurrency:1",           CurlH2Tls, Ebpf, NONE,                                              ANY,     "one stream at a time"),
    r("rst-stream:INTERNAL_ERROR",         CurlH2Tls, Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       CurlH2Tls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH2Tls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH2Tls, Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  CurlH2Tls, Ebpf, NONE,                                              ANY,     "curl sees the idle close and dials anew"),
    r("stall",                             CurlH2Tls, Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "curl resets each timed-out stream, one connection: each a request given up"),
    r("slow:500ms",                        CurlH2Tls, Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH2Tls, Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH2Tls, Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                CurlH2c,   Ebpf, NONE,                                              ANY,     "200s"),
    r("status:503",                        CurlH2c,   Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH2c,   Ebpf, cause_or_unknown("h2_goaway_enhance_your_calm"),   ANY,     "curl often writes its request into the server's GOAWAY and close, fails on the write (EPIPE) and never reads the GOAWAY: such a connection is unknown (the server's bytes unread; the raw backend sees the GOAWAY on the wire), not a server close with a request outstanding"),
    r("goaway-on-concurrency:1",           CurlH2c,   Ebpf, NONE,                                              ANY,     "one stream at a time"),
    r("rst-stream:INTERNAL_ERROR",         CurlH2c,   Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       CurlH2c,   Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH2c,   Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH2c,   Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  CurlH2c,   Ebpf, NONE,                                              ANY,     "one request per connection"),
    r("stall",                             CurlH2c,   Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        CurlH2c,   Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH2c,   Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH2c,   Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                CurlH2c,   Raw,  NONE,                                              ANY,     "200s"),
    r("status:503",                        CurlH2c,   Raw,  cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  CurlH2c,   Raw,  cause("h2_goaway_enhance_your_calm"),              PER_REQ, "GOAWAY before any stream"),
    r("goaway-on-concurrency:1",           CurlH2c,   Raw,  NONE,                                              ANY,     "one stream at a time"),
    r("rst-stream:INTERNAL_ERROR",         CurlH2c,   Raw,  cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       CurlH2c,   Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  CurlH2c,   Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  CurlH2c,   Raw,  cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  CurlH2c,   Raw,  NONE,                                              ANY,     "one request per connection"),
    r("stall",                             CurlH2c,   Raw,  cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        CurlH2c,   Raw,  NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      CurlH2c,   Raw,  cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           CurlH2c,   Raw,  cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                NghttpH2c, Ebpf, NONE,                                              ANY,     "two concurrent streams"),
    r("status:503",                        NghttpH2c, Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  NghttpH2c, Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "GOAWAY before any stream"),
    r("goaway-on-concurrency:1",           NghttpH2c, Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "two streams in flight: GOAWAY, both lost"),
    r("rst-stream:INTERNAL_ERROR",         NghttpH2c, Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       NghttpH2c, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST with both streams unanswered"),
    r("rst-mid-response",                  NghttpH2c, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half a body"),
    r("fin-mid-response",                  NghttpH2c, Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half a body"),
    r("close-idle:500ms",                  NghttpH2c, Ebpf, NONE,                                              ANY,     "all streams at once: never idle"),
    r("stall",                             NghttpH2c, Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        NghttpH2c, Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      NghttpH2c, Ebpf, cause("listen_overflow_or_syn_drop"),              ONE,     "SYNs dropped: one connection"),
    r("refused",                           NghttpH2c, Ebpf, cause("connect_refused"),                          ONE,     "RST to the SYN: one connection"),
    r("ok",                                NghttpTls, Ebpf, NONE,                                              ANY,     "two concurrent streams"),
    r("status:503",                        NghttpTls, Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("wrong-cert",                        NghttpTls, Ebpf, NONE,                                              ANY,     "nghttp warns and goes on"),
    r("untrusted-cert",                    NghttpTls, Ebpf, NONE,                                              ANY,     "nghttp warns and goes on"),
    r("expired-cert",                      NghttpTls, Ebpf, NONE,                                              ANY,     "nghttp warns and goes on"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  NghttpTls, Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "GOAWAY before any stream"),
    r("goaway-on-concurrency:1",           NghttpTls, Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "two streams in flight: GOAWAY, both lost"),
    r("rst-stream:INTERNAL_ERROR",         NghttpTls, Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       NghttpTls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST with both streams unanswered"),
    r("rst-mid-response",                  NghttpTls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half a body"),
    r("fin-mid-response",                  NghttpTls, Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half a body"),
    r("close-idle:500ms",                  NghttpTls, Ebpf, NONE,                                              ANY,     "all streams at once: never idle"),
    r("stall",                             NghttpTls, Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "nghttp's close_notify at its timeout: given up, whoever's FIN comes first"),
    r("slow:500ms",                        NghttpTls, Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      NghttpTls, Ebpf, cause("listen_overflow_or_syn_drop"),              ONE,     "SYNs dropped: one connection"),
    r("refused",                           NghttpTls, Ebpf, cause("connect_refused"),                          ONE,     "RST to the SYN: one connection"),
    r("ok",                                H2load,    Ebpf, NONE,                                              ANY,     "three concurrent streams"),
    r("status:503",                        H2load,    Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  H2load,    Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "GOAWAY before any stream"),
    r("goaway-on-concurrency:1",           H2load,    Ebpf, cause("h2_goaway_enhance_your_calm"),              PER_REQ, "three streams in flight"),
    r("rst-stream:INTERNAL_ERROR",         H2load,    Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       H2load,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answers"),
    r("rst-mid-response",                  H2load,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half a body"),
    r("fin-mid-response",                  H2load,    Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half a body"),
    r("close-idle:500ms",                  H2load,    Ebpf, NONE,                                              ANY,     "all streams at once: never idle"),
    r("stall",                             H2load,    Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        H2load,    Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      H2load,    Ebpf, cause("listen_overflow_or_syn_drop"),              ONE,     "SYNs dropped: one connection"),
    r("refused",                           H2load,    Ebpf, cause("connect_refused"),                          ONE,     "RST to the SYN: one connection"),
    r("ok",                                H2load,    Raw,  NONE,                                              ANY,     "three concurrent streams"),
    r("status:503",                        H2load,    Raw,  cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  H2load,    Raw,  cause("h2_goaway_enhance_your_calm"),              PER_REQ, "GOAWAY before any stream"),
    r("goaway-on-concurrency:1",           H2load,    Raw,  cause("h2_goaway_enhance_your_calm"),              PER_REQ, "three streams in flight"),
    r("rst-stream:INTERNAL_ERROR",         H2load,    Raw,  cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       H2load,    Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answers"),
    r("rst-mid-response",                  H2load,    Raw,  cause("server_abort_mid_request"),                 PER_REQ, "RST after half a body"),
    r("fin-mid-response",                  H2load,    Raw,  cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half a body"),
    r("close-idle:500ms",                  H2load,    Raw,  NONE,                                              ANY,     "all streams at once: never idle"),
    r("stall",                             H2load,    Raw,  cause("no_answer_client_gave_up"),                 PER_REQ, "the client's timeout"),
    r("slow:500ms",                        H2load,    Raw,  NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      H2load,    Raw,  cause("listen_overflow_or_syn_drop"),              ONE,     "SYNs dropped: one connection"),
    r("refused",                           H2load,    Raw,  cause("connect_refused"),                          ONE,     "RST to the SYN: one connection"),
    r("ok",                                Python,    Ebpf, NONE,                                              ANY,     "two 200s"),
    r("status:503",                        Python,    Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  Python,    Ebpf, NONE,                                              ANY,     "HTTP/1.1: Connection: close on each answer"),
    r("rst:after=0",                       Python,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  Python,    Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  Python,    Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  Python,    Ebpf, NONE,                                              ANY,     "a connection per request: nothing to reuse"),
    r("stall",                             Python,    Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "Python's 10 s timeout"),
    r("slow:500ms",                        Python,    Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      Python,    Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped until Python's 10 s timeout"),
    r("refused",                           Python,    Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                PythonTls, Ebpf, NONE,                                              ANY,     "two 200s"),
    r("status:503",                        PythonTls, Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("wrong-cert",                        PythonTls, Ebpf, cause("tls_cert_mismatch"),                        PER_REQ, "TLS 1.3: the active probe sees the name"),
    r("untrusted-cert",                    PythonTls, Ebpf, cause("tls_cert_untrusted"),                       PER_REQ, "TLS 1.3: the active probe sees the issuer"),
    r("expired-cert",                      PythonTls, Ebpf, cause("tls_cert_expired"),                         PER_REQ, "TLS 1.3: the active probe sees the dates"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  PythonTls, Ebpf, NONE,                                              ANY,     "HTTP/1.1: Connection: close on each answer"),
    r("rst:after=0",                       PythonTls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  PythonTls, Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  PythonTls, Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "FIN after half the body"),
    r("close-idle:500ms",                  PythonTls, Ebpf, NONE,                                              ANY,     "a connection per request: nothing to reuse"),
    r("stall",                             PythonTls, Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "Python's 10 s timeout"),
    r("slow:500ms",                        PythonTls, Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      PythonTls, Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped until Python's 10 s timeout"),
    r("refused",                           PythonTls, Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
    r("ok",                                Go,        Ebpf, NONE,                                              ANY,     "200s"),
    r("status:503",                        Go,        Ebpf, cause("http_status/503"),                          PER_REQ, "every answer 503"),
    r("wrong-cert",                        Go,        Ebpf, cause("tls_cert_mismatch"),                        PER_REQ, "TLS 1.3: the active probe sees the name"),
    r("untrusted-cert",                    Go,        Ebpf, cause("tls_cert_untrusted"),                       PER_REQ, "TLS 1.3: the active probe sees the issuer"),
    r("expired-cert",                      Go,        Ebpf, cause("tls_cert_expired"),                         PER_REQ, "TLS 1.3: the active probe sees the dates"),
    r("goaway:ENHANCE_YOUR_CALM:after=0",  Go,        Ebpf, cause("h2_goaway_enhance_your_calm"),              ANY,     "Go retries on new connections until its timeout"),
    r("goaway-on-concurrency:1",           Go,        Ebpf, NONE,                                              ANY,     "one stream at a time"),
    r("rst-stream:INTERNAL_ERROR",         Go,        Ebpf, cause("h2_rst_stream/INTERNAL_ERROR"),             PER_REQ, "every stream reset"),
    r("rst:after=0",                       Go,        Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST instead of the answer"),
    r("rst-mid-response",                  Go,        Ebpf, cause("server_abort_mid_request"),                 PER_REQ, "RST after half the body"),
    r("fin-mid-response",                  Go,        Ebpf, cause("peer_fin_outstanding"),                     PER_REQ, "Go may reset the stream the server's FIN cut (closing a body it cannot finish): the server cut the answer, the client did not give up"),
    r("close-idle:500ms",                  Go,        Ebpf, NONE,                                              ANY,     "requests back to back: never idle"),
    r("stall",                             Go,        Ebpf, cause("no_answer_client_gave_up"),                 PER_REQ, "Go resets each timed-out stream (RST_STREAM CANCEL): each a request given up"),
    r("slow:500ms",                        Go,        Ebpf, NONE,                                              ANY,     "answered within the client's timeout"),
    r("backlog-full",                      Go,        Ebpf, cause("listen_overflow_or_syn_drop"),              PER_REQ, "SYNs dropped"),
    r("refused",                           Go,        Ebpf, cause("connect_refused"),                          PER_REQ, "RST to the SYN"),
];

/// Seconds a client waits for a connect or an answer (Python's is fixed at 10).
const TIMEOUT_S: u64 = 2;

/// Requests `client` makes against `fault`.
fn requests(client: Client, fault: &str) -> u64 {
    match client {
        H2load => 3,
        // Each waits for Python's own 10 s timeout.
        Python | PythonTls if matches!(fault, "stall" | "backlog-full") => 1,
        _ => 2,
    }
}

/// Where a client goes: the listener, the name its certificate is for, the CA.
#[derive(Clone, Debug)]
struct Target {
    addr: SocketAddr,
    name: String,
    ca: PathBuf,
}

impl Client {
    fn tls(self) -> bool {
        matches!(self, CurlH1Tls | CurlH2Tls | NghttpTls | PythonTls | Go)
    }
}

/// Runs `client` `n` times against `fault` at `t`; returns what it said, one line.
fn drive(client: Client, fault: &str, t: &Target, n: u64) -> String {
    match client {
        CurlH1 | CurlH1Tls | CurlH2Tls => curl_run(client, fault, t, n),
        CurlH2c => (0..n)
            .map(|_| curl_run(client, fault, t, 1))
            .collect::<Vec<_>>()
            .join(" / "),
        NghttpH2c | NghttpTls => nghttp_run(client, t, n),
        H2load => h2load_run(t, n),
        Python | PythonTls => (0..n)
            .map(|_| python_run(client, t))
            .collect::<Vec<_>>()
            .join(" / "),
        Go => go_run(t, n),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// curl with `n` URLs (one connection reused while it lasts).
fn curl_run(client: Client, fault: &str, t: &Target, n: u64) -> String {
    let mut args: Vec<String> = vec!["--max-time".into(), TIMEOUT_S.to_string()];
    match client {
        CurlH1 | CurlH1Tls => args.push("--http1.1".into()),
        CurlH2c => args.push("--http2-prior-knowledge".into()),
        _ => {}
    }
    // Transfer starts a second apart: the connection idles past the limit before the
    // second request.
    if fault.starts_with("close-idle") {
        args.extend(["--rate".into(), "1/s".into()]);
    }
    let url = if client.tls() {
        let port = t.addr.port();
        args.extend([
            "--cacert".into(),
            t.ca.display().to_string(),
            "--resolve".into(),
            format!("{}:{port}:{}", t.name, t.addr.ip()),
        ]);
        format!("https://{}:{port}/", t.name)
    } else {
        format!("http://{}/", t.addr)
    };
    for _ in 0..n {
        args.extend(["-o".into(), "/dev/null".into(), url.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = foreign::curl(&args).expect("curl runs");
    format!("curl exit {:?} {}", run.code, one_line(&run.stderr))
}

/// nghttp with `n` distinct paths (it fetches a repeated URI once), over TLS without
/// SNI (nghttp has no `--resolve`; the testbed's certificate is valid for 127.0.0.1).
fn nghttp_run(client: Client, t: &Target, n: u64) -> String {
    let scheme = if client.tls() { "https" } else { "http" };
    let urls: Vec<String> = (0..n)
        .map(|i| format!("{scheme}://{}/{i}", t.addr))
        .collect();
    let timeout = format!("--timeout={TIMEOUT_S}");
    let mut args = vec!["-v", "-n", timeout.as_str()];
    args.extend(urls.iter().map(String::as_str));
    let run = foreign::nghttp(&args).expect("nghttp runs");
    let said: Vec<&str> = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .filter(|l| {
            [
                "recv GOAWAY",
                "recv RST_STREAM",
                ":status:",
                "ERROR",
                "WARNING",
                "processed",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect();
    format!("nghttp exit {:?} {}", run.code, one_line(&said.join(" | ")))
}

fn h2load_run(t: &Target, n: u64) -> String {
    let n = n.to_string();
    let timeout = format!("--connection-inactivity-timeout={TIMEOUT_S}");
    let url = format!("http://{}/", t.addr);
    let run =
        foreign::h2load(&["-n", &n, "-c", "1", "-m", &n, &timeout, &url]).expect("h2load runs");
    let said: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("requests:") || l.starts_with("status codes:"))
        .collect();
    format!("h2load {}", one_line(&said.join(" | ")))
}

fn python_run(client: Client, t: &Target) -> String {
    let get = if client.tls() {
        PythonGet::new(format!("https://{}/", t.addr))
            .cacert(&t.ca)
            .server_name(&t.name)
    } else {
        PythonGet::new(format!("http://{}/", t.addr))
    };
    one_line(&get.run().expect("python3 runs").stdout)
}

fn go_run(t: &Target, n: u64) -> String {
    let s = GoClient::new(format!("https://{}/", t.addr))
        .cacert(&t.ca)
        .server_name(&t.name)
        .h2()
        .requests(u32::try_from(n).unwrap())
        .timeout(Duration::from_secs(TIMEOUT_S))
        .run()
        .expect("the Go client runs");
    format!("go ok {} status {:?} errors {:?}", s.ok, s.status, s.errors)
}

/// What one cell's port got in its session's report.
#[derive(Debug, Default)]
struct Seen {
    /// `(id, detail, count)`, in the report's order (most first).
    causes: Vec<(String, Option<String>, u64)>,
    /// Causes whose count also holds connections outside the session's ports (the eBPF
    /// backend's filter let them in): their counts are upper bounds.
    outside: BTreeSet<String>,
    unattributed: u64,
    /// Causes this cell shares with another port: it cannot be judged.
    shared: Vec<String>,
    /// What the client said.
    client: String,
}

impl Seen {
    fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .causes
            .iter()
            .map(|(id, detail, n)| {
                let more = if self.outside.contains(id) {
                    " (+ outside the filter)"
                } else {
                    ""
                };
                match detail {
                    Some(d) => format!("{id}/{d} ×{n}{more}"),
                    None => format!("{id} ×{n}{more}"),
                }
            })
            .collect();
        if self.unattributed > 0 {
            parts.push(format!("unattributed ×{}", self.unattributed));
        }
        parts.extend(self.shared.iter().map(|s| format!("SHARED {s}")));
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The session's ports a cause's (or the unattributed bucket's) examples are on, and
/// how many examples are on no port of the session. When the examples may have been cut
/// (5 at most), the connections given cause `id` count too.
fn ports_of(
    v: &Value,
    id: Option<&str>,
    report: &Value,
    ports: &BTreeSet<u16>,
) -> (BTreeSet<u16>, usize) {
    let port = |c: &Value| -> Option<u16> {
        let ends = ["remote", "local"].map(|k| c[k].as_str()?.parse::<SocketAddr>().ok());
        ends.iter()
            .flatten()
            .map(SocketAddr::port)
            .find(|p| ports.contains(p))
    };
    let mut examples: Vec<&Value> = v["examples"].as_array().expect("examples").iter().collect();
    if examples.len() >= 5
        && let Some(id) = id
    {
        let conns = report["connections"].as_array().expect("connections");
        examples.extend(conns.iter().filter(|c| c["cause"] == id));
    }
    let on: BTreeSet<u16> = examples.iter().filter_map(|e| port(e)).collect();
    let outside = examples.iter().filter(|e| port(e).is_none()).count();
    (on, outside)
}

/// Splits a session's report by port: each cause goes to the one port its examples are
/// on. A cause on several ports is marked shared on each: their counts cannot be told
/// apart. One also on connections outside the session's ports (which the eBPF filter
/// should have kept out) goes to its port, its count an upper bound.
fn split(report: &Value, ports: &BTreeSet<u16>) -> Vec<(u16, Seen)> {
    let mut seen: Vec<(u16, Seen)> = ports.iter().map(|p| (*p, Seen::default())).collect();
    let un = &report["unattributed"];
    let bucket = (
        "unattributed".to_owned(),
        None,
        un["count"].as_u64().unwrap_or(0),
        un,
    );
    let causes = report["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            let id = c["id"].as_str().expect("cause id").to_owned();
            let detail = c["detail"].as_str().map(str::to_owned);
            (id, detail, c["count"].as_u64().expect("cause count"), c)
        });
    for (id, detail, count, c) in causes.chain([bucket]) {
        let (on, outside) = ports_of(c, Some(&id), report, ports);
        for (_, s) in seen.iter_mut().filter(|(p, _)| on.contains(p)) {
            if on.len() > 1 {
                s.shared.push(format!("{id} ×{count} on ports {on:?}"));
                continue;
            }
            if outside > 0 {
                s.outside.insert(id.clone());
            }
            if id == "unattributed" {
                s.unattributed = count;
            } else {
                s.causes.push((id.clone(), detail.clone(), count));
            }
        }
    }
    seen
}

/// Whether expectations `a` and `b` could be the same cause entry of a report.
fn may_collide(a: &str, b: &str) -> bool {
    let (ia, da) = a.split_once('/').map_or((a, None), |(i, d)| (i, Some(d)));
    let (ib, db) = b.split_once('/').map_or((b, None), |(i, d)| (i, Some(d)));
    ia == ib && (da.is_none() || db.is_none() || da == db)
}

/// The causes a row may put in its session's report: what it expects, and the cause
/// ids (the words with `_`) of what it says today if that is wrong.
fn keys(row: &Row) -> Vec<&'static str> {
    let said = row.known_wrong.unwrap_or("").split_whitespace();
    let ids = said
        .map(|w| w.trim_matches('`'))
        .filter(|w| w.contains('_'));
    let mut k: Vec<&'static str> = ids.collect();
    if let Expect::Cause(c) | Expect::CauseOrUnknown(c) = row.expect {
        k.push(c);
    }
    k
}

/// Groups a column's rows into sessions, first fit, so that no two rows of a session
/// may give the same cause; a reconnect storm ([`storms`]) has a session of its own.
fn sessions<'a>(rows: &[&'a Row]) -> Vec<Vec<&'a Row>> {
    let (alone, rows): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| storms(r));
    let mut groups: Vec<Vec<&Row>> = Vec::new();
    for row in rows {
        let clash = |o: &&Row| {
            keys(o)
                .iter()
                .any(|a| keys(row).iter().any(|b| may_collide(a, b)))
        };
        match groups.iter_mut().find(|g| !g.iter().any(clash)) {
            Some(g) => g.push(row),
            None => groups.push(vec![row]),
        }
    }
    groups.extend(alone.into_iter().map(|r| vec![r]));
    groups
}

/// Sessions of this process record side by side, except one with a reconnect storm,
/// which records alone: the eBPF backend can go on tracking a kernel socket address
/// after its socket was destroyed, and the storm's hundreds of new sockets reusing such
/// addresses would land in the other sessions' reports (seen: a Go connection to
/// another listener counted in h2load's GOAWAY cell).
static RECORDING: RwLock<()> = RwLock::new(());

/// Go retries a stream refused by GOAWAY on a new connection, again and again until its
/// timeout: hundreds of connections a second, the last one maybe cut mid-handshake (a
/// TLS handshake given up, which the certificate probe looks at).
fn storms(row: &Row) -> bool {
    row.client == Go && row.fault.starts_with("goaway:")
}

/// Where each of `rows` listens.
fn targets<'a>(rows: &[&'a Row], tb: &Testbed) -> Vec<(&'a Row, Target)> {
    rows.iter()
        .map(|row| {
            let addr = tb.addr(row.fault).expect("a listener per fault");
            let name = tb.server_name().to_owned();
            let ca = tb.ca_path().to_owned();
            (*row, Target { addr, name, ca })
        })
        .collect()
}

/// Records one session over `rows`' listeners while every client runs at once; returns
/// each fault's part of the report, and the report.
fn run_session(rows: &[&Row], tb: &Testbed, backend: Via) -> (Vec<(&'static str, Seen)>, Value) {
    let client = rows[0].client;
    let targets = targets(rows, tb);
    let ports: BTreeSet<u16> = targets.iter().map(|(_, t)| t.addr.port()).collect();
    let exes = if client == Go {
        vec![GoClient::binary().expect("the Go client builds (golang-go)")]
    } else {
        vec![]
    };
    let backend = match backend {
        Ebpf => Backend::Ebpf,
        Raw => Backend::Raw,
    };
    let (_alone, _beside);
    if rows.iter().any(|r| storms(r)) {
        _alone = RECORDING.write().unwrap_or_else(PoisonError::into_inner);
    } else {
        _beside = RECORDING.read().unwrap_or_else(PoisonError::into_inner);
    }
    // The probe trusts what the clients trust (`--cacert`), as its user would set it.
    let probe = ProbeOptions {
        cacert: Some(tb.ca_path().to_owned()),
        ..ProbeOptions::default()
    };
    let session = Session::on_ports(ports.iter().copied().collect(), backend, exes, probe);
    let said: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = targets
            .iter()
            .map(|(row, t)| {
                s.spawn(move || drive(client, row.fault, t, requests(client, row.fault)))
            })
            .collect();
        runs.into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let (_, report) = session.finish();
    assert_eq!(report["run"]["lost_events"], 0, "{:#}", report["run"]);
    let mut by_port = split(&report, &ports);
    let cells = targets
        .iter()
        .zip(said)
        .map(|((row, t), client)| {
            let i = by_port.iter().position(|(p, _)| *p == t.addr.port());
            let mut seen = by_port.swap_remove(i.expect("a part per port")).1;
            seen.client = client;
            (row.fault, seen)
        })
        .collect();
    (cells, report)
}

/// Whether `seen` is what `row` expects; the error says how it differs.
fn judge(row: &Row, seen: &Seen) -> Result<(), String> {
    if !seen.shared.is_empty() {
        return Err("a cause it shares with another port".to_owned());
    }
    // The report ranks causes by count, most first.
    match (row.expect, seen.causes.first()) {
        (Expect::NoFailure, None) if seen.unattributed == 0 => Ok(()),
        (Expect::Unknown | Expect::CauseOrUnknown(_), None) if seen.unattributed > 0 => Ok(()),
        (Expect::Cause(want) | Expect::CauseOrUnknown(want), Some((id, detail, n))) => {
            let (want_id, want_detail) = want
                .split_once('/')
                .map_or((want, None), |(i, d)| (i, Some(d)));
            if id != want_id || (want_detail.is_some() && want_detail != detail.as_deref()) {
                return Err(format!("top cause is not {want}"));
            }
            let want = match row.count {
                Count::Any => return Ok(()),
                Count::PerRequest => requests(row.client, row.fault),
                Count::Exactly(k) => k,
            };
            // Connections outside the filter only add to a count.
            match seen.outside.contains(id) {
                false if *n == want => Ok(()),
                true if *n >= want => Ok(()),
                _ => Err(format!("count {n}, expected {want}")),
            }
        }
        _ => Err(format!("expected {}", cell_text(row))),
    }
}

/// The rows of a column, in table order, those of `FAULTLINE_MATRIX_FAULT` only.
fn column_rows(client: Client, backend: Via) -> Vec<&'static Row> {
    let only = std::env::var("FAULTLINE_MATRIX_FAULT").unwrap_or_default();
    ROWS.iter()
        .filter(|r| r.client == client && r.backend == backend && r.fault.contains(&only))
        .collect()
}

/// Runs a column: one testbed with a listener per fault, its sessions one after the
/// other, then every cell judged. Prints the column, writes the reports of sessions
/// with a failing cell to the temporary directory, and fails on any cell that is not
/// what its row says; known-wrong rows are listed, not asserted.
fn column(client: Client, backend: Via) {
    let rows = column_rows(client, backend);
    assert!(!rows.is_empty(), "no rows for {client:?} {backend:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let specs: Vec<&str> = rows.iter().map(|r| r.fault).collect();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs(&specs).unwrap()))
        .expect("the testbed starts");
    let mut out = format!("\n== {client:?} / {backend:?}\n");
    let mut failures = Vec::new();
    for (n, group) in sessions(&rows).iter().enumerate() {
        let (cells, report) = run_session(group, &tb, backend);
        let failed_before = failures.len();
        for (row, (_, seen)) in group.iter().zip(&cells) {
            out.push_str(&verdict_line(row, seen, &mut failures));
        }
        if failures.len() > failed_before {
            let path = std::env::temp_dir().join(format!(
                "faultline-matrix-{client:?}-{backend:?}-{n}-{}.json",
                std::process::id()
            ));
            std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
            out.push_str(&format!("   (report: {})\n", path.display()));
        }
    }
    rt.block_on(tb.shutdown());
    eprintln!("{out}");
    assert!(
        failures.is_empty(),
        "cells not as expected:\n{}",
        failures.join("\n")
    );
}

/// One line of a column's printout; a failure is added to `failures`.
fn verdict_line(row: &Row, seen: &Seen, failures: &mut Vec<String>) -> String {
    let verdict = match (judge(row, seen), row.known_wrong) {
        (Ok(()), None) => "ok".to_owned(),
        (Ok(()), Some(_)) => "KNOWN WRONG, but right now: update the row".to_owned(),
        (Err(_), Some(says)) => format!("KNOWN WRONG: says {says}, should say {}", cell_text(row)),
        (Err(e), None) => {
            let cell = format!("{} / {:?} / {:?}", row.fault, row.client, row.backend);
            failures.push(format!("{cell}: {e}; seen {}", seen.summary()));
            format!("FAIL: {e}")
        }
    };
    format!(
        "{:34} {:40} {verdict} [client: {}]\n",
        row.fault,
        seen.summary(),
        seen.client
    )
}

/// A cell of the README table: the cause and its count, `none`, or `unknown`.
fn cell_text(row: &Row) -> String {
    let count = match row.count {
        Count::Any => String::new(),
        Count::PerRequest => " ×N".to_owned(),
        Count::Exactly(k) => format!(" ×{k}"),
    };
    match row.expect {
        Expect::NoFailure => "none".to_owned(),
        Expect::Unknown => "unknown".to_owned(),
        Expect::Cause(c) => format!("`{}`{count}", c.split('/').next().unwrap_or(c)),
        Expect::CauseOrUnknown(c) => {
            format!("`{}`{count} or unknown", c.split('/').next().unwrap_or(c))
        }
    }
}

/// README.md's matrix: a row per fault, a column per client and backend, then the
/// legend and the cells known to be wrong today.
fn render_matrix() -> String {
    let mut out = String::from("| fault |");
    for (_, _, heading) in COLUMNS {
        out.push_str(&format!(" {heading} |"));
    }
    out.push_str(&format!("\n| --- |{}\n", " --- |".repeat(COLUMNS.len())));
    let mut wrong = Vec::new();
    for fault in FAULTS {
        out.push_str(&format!("| `{fault}` |"));
        for (client, backend, heading) in COLUMNS {
            let row = ROWS
                .iter()
                .find(|r| r.fault == *fault && r.client == *client && r.backend == *backend);
            let text = match row {
                None => "—".to_owned(),
                Some(row) => match row.known_wrong {
                    None => cell_text(row),
                    Some(says) => {
                        wrong.push(format!(
                            "{}. `{fault}`, {heading}: says {says}; {}.",
                            wrong.len() + 1,
                            row.note
                        ));
                        format!("{} ✗{}", cell_text(row), wrong.len())
                    }
                },
            };
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out.push_str(LEGEND);
    if !wrong.is_empty() {
        out.push_str(
            "\nCells marked ✗ show the right answer; the analyzer does not give it yet \
             (the test runs them and prints what they say, without failing):\n\n",
        );
        out.push_str(&wrong.join("\n"));
        out.push('\n');
    }
    out
}

/// What the table's cells mean, after it.
const LEGEND: &str = "
`×N`: one failure per request the client made (the test makes 2 per cell, h2load 3,
Python 1 where it waits out its own 10 s timeout); `×1`: exactly one (a connection
whose requests never went out, or the one request written into an idle close); no
count: as many as the client's retries made.
`none`: every request succeeded and nothing is named. `—`: the fault does not apply
(certificate faults over cleartext; the HTTP/2-only faults answer 200 over HTTP/1.1).
";

const REGENERATE: &str =
    "FAULTLINE_BLESS=1 cargo test -p faultline-tests --test analyzer_matrix readme";
const BEGIN: &str = "<!-- matrix: begin -->";
const END: &str = "<!-- matrix: end -->";

/// README.md's table is [`render_matrix`] of [`ROWS`]; `FAULTLINE_BLESS=1` rewrites it
/// between its markers instead of failing. Needs no privileges.
#[test]
fn readme_matrix_is_the_tests_data() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let mut readme = std::fs::read_to_string(&path).expect("read README.md");
    for marker in [BEGIN, END] {
        let n = readme.matches(marker).count();
        assert_eq!(n, 1, "README.md must hold `{marker}` once (found {n})");
    }
    let start = readme.find(BEGIN).unwrap() + BEGIN.len();
    let end = readme.find(END).unwrap();
    assert!(start <= end, "README.md: `{END}` before `{BEGIN}`");
    let want = format!("\n\n{}\n", render_matrix());
    if readme[start..end] == want {
        return;
    }
    let bless = std::env::var_os("FAULTLINE_BLESS").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        bless,
        "README.md's matrix differs from this test's ROWS; regenerate it with\n\n    {REGENERATE}\n"
    );
    readme.replace_range(start..end, &want);
    std::fs::write(&path, readme).expect("write README.md");
}

/// The data is whole: every row's fault is in the table, no cell twice, every column
/// has rows.
#[test]
fn rows_are_one_per_cell() {
    let mut cells = BTreeSet::new();
    for row in ROWS {
        assert!(FAULTS.contains(&row.fault), "{row:?}: fault not in FAULTS");
        let cell = format!("{} {:?} {:?}", row.fault, row.client, row.backend);
        assert!(cells.insert(cell), "{row:?}: twice");
        assert!(
            COLUMNS
                .iter()
                .any(|(c, b, _)| *c == row.client && *b == row.backend),
            "{row:?}: no column"
        );
    }
    for (client, backend, _) in COLUMNS {
        assert!(
            ROWS.iter()
                .any(|r| r.client == *client && r.backend == *backend)
        );
    }
}

#[test]
fn curl_http1() {
    column(CurlH1, Ebpf);
}

#[test]
fn curl_http1_raw_backend() {
    column(CurlH1, Raw);
}

#[test]
fn curl_http1_over_tls() {
    column(CurlH1Tls, Ebpf);
}

#[test]
fn curl_h2_over_tls() {
    column(CurlH2Tls, Ebpf);
}

#[test]
fn curl_h2c() {
    column(CurlH2c, Ebpf);
}

#[test]
fn curl_h2c_raw_backend() {
    column(CurlH2c, Raw);
}

#[test]
fn nghttp_h2c() {
    column(NghttpH2c, Ebpf);
}

#[test]
fn nghttp_over_tls() {
    column(NghttpTls, Ebpf);
}

#[test]
fn h2load_h2c() {
    column(H2load, Ebpf);
}

#[test]
fn h2load_h2c_raw_backend() {
    column(H2load, Raw);
}

#[test]
fn python_http_client() {
    column(Python, Ebpf);
}

#[test]
fn python_http_client_over_tls() {
    column(PythonTls, Ebpf);
}

#[test]
fn go_client_h2_over_tls() {
    column(Go, Ebpf);
}
