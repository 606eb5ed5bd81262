//! Building the records workers send to the single consumer: request outcomes and
//! connection lifecycle steps, stamped with the run's clock.
use std::{net::SocketAddr, time::Instant};

use events::{
    model::{
        Class, CloseHow, ConnEvent, ConnFacts, ConnStep, ConnTag, H2Facts, Phase, RequestEvent,
        RequestTag,
    },
    time::{now_unix_ns, rfc3339_ns},
};
use tokio::sync::mpsc;

/// What workers send to the consumer.
#[derive(Debug)]
pub enum Msg {
    Request {
        ev: Box<RequestEvent>,
        intended_unix_ns: u64,
    },
    Conn(Box<ConnEvent>),
}

/// One paired reading of the monotonic and wall clocks at the start of the run, so
/// every `Instant` converts to wall time consistently.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    pub start: Instant,
    pub start_unix_ns: u64,
}

impl RunClock {
    pub fn now() -> Self {
        Self {
            start: Instant::now(),
            start_unix_ns: now_unix_ns(),
        }
    }

    /// Wall-clock nanoseconds of `t`.
    pub fn unix_ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.start) {
            Some(d) => self.start_unix_ns + d.as_nanos() as u64,
            None => self
                .start_unix_ns
                .saturating_sub(self.start.duration_since(t).as_nanos() as u64),
        }
    }

    /// RFC 3339 with nanoseconds.
    pub fn rfc3339(&self, t: Instant) -> String {
        rfc3339_ns(self.unix_ns(t))
    }
}

/// A request's identity and timing, known before it runs.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub seq: u64,
    pub method: String,
    pub url: String,
    pub bytes_out: u64,
    /// When the schedule wanted it sent.
    pub intended: Instant,
    pub retry_of: Option<u64>,
}

/// How a request ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub code: u16,
    pub bytes_in: u64,
    /// When the request was actually handed to the connection.
    pub sent: Option<Instant>,
    pub failure: Option<Failure>,
    pub h2: Option<H2Facts>,
}

/// A failure, classified.
#[derive(Clone, Debug)]
pub struct Failure {
    pub class: Class,
    pub phase: Phase,
    pub error: String,
}

/// Sends records to the consumer. Cloned into every worker.
#[derive(Clone, Debug)]
pub struct Recorder {
    pub tx: mpsc::Sender<Msg>,
    pub clock: RunClock,
    pub attack: std::sync::Arc<str>,
}

impl Recorder {
    /// Records a finished request.
    pub async fn request(&self, a: &Attempt, conn: ConnFacts, out: Outcome, ended: Instant) {
        let (class, phase, error) = match out.failure {
            Some(f) => (Some(f.class), Some(f.phase), f.error),
            None if out.code >= 400 => (
                Some(Class::HttpStatus),
                Some(Phase::AwaitHeaders),
                format!("HTTP status {}", out.code),
            ),
            None => (None, None, String::new()),
        };
        let latency = ended.saturating_duration_since(a.intended).as_nanos() as u64;
        let ev = RequestEvent {
            kind: RequestTag::Request,
            attack: self.attack.to_string(),
            seq: a.seq,
            code: out.code,
            timestamp: self.clock.rfc3339(a.intended),
            latency,
            bytes_out: if out.sent.is_some() { a.bytes_out } else { 0 },
            bytes_in: out.bytes_in,
            error,
            method: a.method.clone(),
            url: a.url.clone(),
            service_latency: out
                .sent
                .map(|s| ended.saturating_duration_since(s).as_nanos() as u64),
            lag: out
                .sent
                .unwrap_or(ended)
                .saturating_duration_since(a.intended)
                .as_nanos() as u64,
            class,
            phase,
            conn,
            h2: out.h2,
            retry_of: a.retry_of,
        };
        let msg = Msg::Request {
            ev: Box::new(ev),
            intended_unix_ns: self.clock.unix_ns(a.intended),
        };
        // The consumer outlives every worker; a send error means the run is being torn
        // down, and there is nobody left to record to.
        let _ = self.tx.send(msg).await;
    }

    /// Records a connection lifecycle step.
    pub async fn conn(&self, conn_id: u64, at: Instant, step: ConnStep) {
        let ev = ConnEvent {
            kind: ConnTag::Conn,
            attack: self.attack.to_string(),
            conn_id,
            timestamp: self.clock.rfc3339(at),
            step,
        };
        let _ = self.tx.send(Msg::Conn(Box::new(ev))).await;
    }

    /// Records that the connection `state` describes closed now, `how`, with the
    /// requests it served and its age.
    pub async fn closed(&self, state: &ConnState, how: CloseHow, error: String) {
        let step = ConnStep::Closed {
            how,
            error,
            requests: state.requests,
            age_us: state.opened.elapsed().as_micros() as u64,
        };
        self.conn(state.conn_id, Instant::now(), step).await;
    }
}

/// The live state of one connection, for [`ConnFacts`].
#[derive(Clone, Debug)]
pub struct ConnState {
    pub conn_id: u64,
    pub sock_cookie: Option<u64>,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub opened: Instant,
    /// Requests completed on it.
    pub requests: u64,
    /// When the last request on it ended (or when it opened).
    pub last_active: Instant,
}

impl ConnState {
    /// The facts for a request sent at `now` with `inflight` other streams open.
    pub fn facts(&self, now: Instant, inflight: u32) -> ConnFacts {
        ConnFacts {
            conn_id: self.conn_id,
            sock_cookie: self.sock_cookie,
            local: self.local,
            remote: Some(self.remote),
            conn_age_us: now.saturating_duration_since(self.opened).as_micros() as u64,
            conn_requests: self.requests,
            idle_us: if inflight == 0 {
                now.saturating_duration_since(self.last_active).as_micros() as u64
            } else {
                0
            },
            inflight,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn clock_converts_instants_both_ways_of_start() {
        let c = RunClock {
            start: Instant::now(),
            start_unix_ns: 1_000_000_000_000,
        };
        assert_eq!(
            c.unix_ns(c.start + Duration::from_nanos(5)),
            1_000_000_000_005
        );
        if let Some(before) = c.start.checked_sub(Duration::from_nanos(7)) {
            assert_eq!(c.unix_ns(before), 999_999_999_993);
        }
        assert_eq!(rfc3339_ns(1_500_000_000), "1970-01-01T00:00:01.500000000Z");
    }

    #[test]
    fn idle_time_counts_only_when_nothing_is_in_flight() {
        let t0 = Instant::now();
        let s = ConnState {
            conn_id: 1,
            sock_cookie: Some(9),
            local: None,
            remote: "127.0.0.1:1".parse().unwrap(),
            opened: t0,
            requests: 3,
            last_active: t0,
        };
        let later = t0 + Duration::from_millis(20);
        assert_eq!(s.facts(later, 0).idle_us, 20_000);
        assert_eq!(s.facts(later, 2).idle_us, 0);
        assert_eq!(s.facts(later, 2).conn_age_us, 20_000);
    }
}
