//! The connection's HTTP exchanges summed at its end: one [`HttpTally`].
use std::collections::BTreeMap;

use super::Inspector;
use crate::{
    event::wire_fact::{HttpTally, WireFact},
    raw::{
        h2c::{H2cObserver, StreamView},
        http1::Http1Observer,
    },
};

impl Inspector {
    /// The HTTP/1.1 tally at the end, if the client sent a request. The last response
    /// is judged by where the server's observer stands: mid-message is cut short; the
    /// requests beyond the answered and the cut got not one byte. When the server's
    /// side could not be followed to the end, nothing is called unanswered and the
    /// tally is marked incomplete.
    pub(super) fn h1_tally(&self, emit: &mut dyn FnMut(WireFact)) -> Option<HttpTally> {
        let n = &self.h1;
        // A response answers a request even if the request's head was not read.
        let requests = n.requests.max(n.responses);
        if requests == 0 {
            return None;
        }
        if let Some(what) = &n.server_not_http {
            emit(WireFact::Malformed {
                from_server: true,
                protocol: "http/1.1".into(),
                offset: 0,
                what: format!("the answer to an HTTP/1.1 request is not HTTP/1.x: {what}"),
            });
        }
        let server = self.sides[1].obs.h1.as_ref();
        let followed = server.is_some() || n.switched;
        let cut = u32::from(server.is_some_and(Http1Observer::mid_message));
        let answered = n.answered.min(requests);
        let unanswered = match followed {
            true => requests.saturating_sub(answered).saturating_sub(cut),
            false => 0,
        };
        Some(HttpTally {
            protocol: "http/1.1".into(),
            requests,
            answered,
            statuses: n.statuses.clone(),
            cut_mid_answer: cut,
            unanswered,
            streams_reset: BTreeMap::new(),
            incomplete: n.incomplete || !followed,
            ..HttpTally::default()
        })
    }

    /// The h2c tally at the end, from the streams each direction's observer saw: the
    /// client's requests (odd streams it sent HEADERS on) judged by what the server sent
    /// on each, with the status the server's observer read from each response's HPACK
    /// header block. An answered stream whose status was lost with the HPACK state (a
    /// block missed or not decodable) makes the tally incomplete: no status is guessed.
    pub(super) fn h2c_tally(&self) -> Option<HttpTally> {
        let client = self.sides[0].obs.h2.as_ref().filter(|_| self.h2c)?;
        let server = self.sides[1].obs.h2.as_ref();
        let evicted = |o: Option<&H2cObserver>| o.is_some_and(|o| o.stats().streams_evicted > 0);
        let mut t = HttpTally {
            protocol: "h2c".into(),
            incomplete: self.h2c_broken
                || server.is_none()
                || self.sides.iter().any(|s| s.obs.capped)
                || evicted(Some(client))
                || evicted(server),
            ..HttpTally::default()
        };
        // RFC 9113 section 5.1.1: client-initiated streams have odd ids.
        // Streams above a graceful GOAWAY's last_stream_id were never processed: a
        // client retries them on another connection (RFC 9113 section 6.8); they are
        // not this connection's requests.
        let refused = server.and_then(H2cObserver::graceful_goaway);
        for req in client.streams().filter(|v| {
            v.stream_id % 2 == 1 && v.headers_frames > 0 && refused.is_none_or(|l| v.stream_id <= l)
        }) {
            t.requests = t.requests.saturating_add(1);
            let Some(server) = server else { continue };
            let answer = server.stream(req.stream_id);
            if let Some(status) = answer.and_then(|v| v.status) {
                *t.statuses.entry(status).or_default() += 1;
            }
            match answer {
                Some(v) if v.end_stream => {
                    t.answered += 1;
                    t.incomplete |= v.status_lost;
                }
                Some(StreamView {
                    reset: Some(code), ..
                }) => *t.streams_reset.entry(code.to_string()).or_default() += 1,
                // The client reset it before any answer: it gave up waiting. (An answer
                // begun and then cut is judged by who cut it, below.)
                None if req.reset.is_some() => t.client_cancelled += 1,
                Some(_) => t.cut_mid_answer += 1,
                None => t.unanswered += 1,
            }
        }
        // Even with no request: the connection was HTTP/2, and nothing of it failed.
        Some(t)
    }
}
