//! Rules for failures the server stated at the HTTP level: HTTP/2 GOAWAY and RST_STREAM
//! (RFC 9113 sections 6.8 and 6.4), HTTP status codes, protocol errors.
use events::model::Class;

use super::{Case, Confidence, Evidence, Level, Verdict};

/// A request that ended with a GOAWAY (loadgen `h2_goaway`), split by error code:
/// `h2_goaway_enhance_your_calm`, `h2_goaway_no_error`, `h2_goaway` (any other code,
/// as the detail).
pub fn h2_goaway(case: &Case<'_>) -> Option<Verdict> {
    let r = case.request.filter(|r| r.class == Some(Class::H2Goaway))?;
    let h2 = r.h2.as_ref();
    let goaway = h2
        .and_then(|h| h.goaway.as_ref())
        .or_else(|| case.conn.and_then(|c| c.goaway.as_ref()));
    let code = goaway.map_or("unknown", |g| g.code.as_str());
    let ts = case.intended_unix_ns;
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    if let Some(g) = goaway {
        let debug = if g.debug.is_empty() {
            String::new()
        } else {
            format!(", debug data {:?}", g.debug)
        };
        evidence.push(Evidence::loadgen(
            ts,
            format!(
                "GOAWAY {} with last_stream_id {}{debug}",
                g.code, g.last_stream_id
            ),
        ));
    }
    if let (Some(id), Some(above)) = (
        h2.and_then(|h| h.stream_id),
        h2.and_then(|h| h.above_last_stream_id),
    ) {
        evidence.push(Evidence::loadgen(
            ts,
            if above {
                format!("stream {id} was above last_stream_id: never processed, safe to retry")
            } else {
                format!(
                    "stream {id} was at or below last_stream_id: the server may have processed it"
                )
            },
        ));
    }
    // The first failed stream may have opened with few others; the connection's worst
    // moment is what the server judged.
    let in_flight = (r.conn.inflight + 1).max(case.conn.map_or(0, |c| c.max_streams_in_flight));
    let max = case.conn.and_then(|c| c.max_concurrent_streams);
    let max_words = max.map_or("not announced".to_owned(), |m| m.to_string());
    evidence.push(Evidence::loadgen(
        ts,
        format!(
            "up to {in_flight} streams in flight on the connection when the GOAWAY came; server SETTINGS_MAX_CONCURRENT_STREAMS {max_words}; {} requests completed on it before",
            r.conn.conn_requests
        ),
    ));
    let confidence = if goaway.is_some() {
        Confidence::new(Level::High, "loadgen's frame tap saw the server's GOAWAY")
    } else {
        Confidence::new(
            Level::Medium,
            "the HTTP/2 client reported a GOAWAY; the frame was not recorded",
        )
    };
    let (cause, detail, title, hint) = match code {
        "ENHANCE_YOUR_CALM" => (
            "h2_goaway_enhance_your_calm",
            None,
            "HTTP/2 GOAWAY ENHANCE_YOUR_CALM: the server judged the client abusive".to_owned(),
            format!(
                "the server (Go's HTTP/2 server, so Traefik, does this) closes connections that exceed its stream or reset limits: keep loadgen's streams per connection ({in_flight} in flight here) under the server's SETTINGS_MAX_CONCURRENT_STREAMS ({max_words}), or raise the server's limit"
            ),
        ),
        "NO_ERROR" => (
            "h2_goaway_no_error",
            None,
            "HTTP/2 GOAWAY NO_ERROR: the server closed the connection gracefully".to_owned(),
            "the server ends connections after a number of requests, on idle or on reload: retry streams above last_stream_id (never processed), or raise the server's max requests per connection".to_owned(),
        ),
        other => (
            "h2_goaway",
            Some(other.to_owned()),
            format!("HTTP/2 GOAWAY {other}"),
            "the server tore the connection down with this error code (RFC 9113 section 7): see the debug data and the server's logs; streams above last_stream_id are safe to retry".to_owned(),
        ),
    };
    Some(Verdict {
        cause,
        detail,
        title,
        confidence,
        evidence,
        hint,
    })
}

/// A stream the server reset (loadgen `h2_rst_stream`), split by error code.
pub fn h2_rst_stream(case: &Case<'_>) -> Option<Verdict> {
    let r = case
        .request
        .filter(|r| r.class == Some(Class::H2RstStream))?;
    let h2 = r.h2.as_ref();
    let code = h2
        .and_then(|h| h.rst_code.clone())
        .unwrap_or_else(|| "unknown".into());
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let stream = h2
        .and_then(|h| h.stream_id)
        .map_or(String::new(), |id| format!(" on stream {id}"));
    evidence.push(Evidence::loadgen(
        case.intended_unix_ns,
        format!("RST_STREAM {code}{stream}"),
    ));
    if let Some(c) = case.conn.filter(|c| c.rst_streams > 1) {
        evidence.push(Evidence::loadgen(
            c.opened_unix_ns,
            format!(
                "{} RST_STREAM frames from the server on this connection",
                c.rst_streams
            ),
        ));
    }
    let hint = match code.as_str() {
        "REFUSED_STREAM" => {
            "the server refused the stream before processing it (over its concurrency limit?): safe to retry; keep streams per connection under its SETTINGS_MAX_CONCURRENT_STREAMS"
        }
        "CANCEL" => {
            "the server cancelled the stream: its upstream gave up or timed out; see the server's logs"
        }
        "INTERNAL_ERROR" => "the server failed while processing the request: see its logs",
        "ENHANCE_YOUR_CALM" => "the server rate-limits this client: slow down or raise its limits",
        "PROTOCOL_ERROR" | "FLOW_CONTROL_ERROR" | "STREAM_CLOSED" | "FRAME_SIZE_ERROR" => {
            "the server saw a protocol violation on the stream: check the client and any proxy in between"
        }
        _ => {
            "the server reset the stream with this code (RFC 9113 section 7): see the server's logs"
        }
    };
    Some(Verdict {
        cause: "h2_rst_stream",
        detail: Some(code.clone()),
        title: format!("HTTP/2 stream reset by the server: {code}"),
        confidence: Confidence::new(
            Level::High,
            "the HTTP/2 client received the server's RST_STREAM",
        ),
        evidence,
        hint: hint.into(),
    })
}

/// A response with a non-success status (loadgen `http_status`), split by status.
pub fn http_status(case: &Case<'_>) -> Option<Verdict> {
    let code = match case.request {
        Some(r) if r.class == Some(Class::HttpStatus) => r.code,
        Some(_) => return None,
        None => case.status.filter(|s| *s >= 400)?,
    };
    let (name, hint) = match code {
        429 => (
            "Too Many Requests",
            "the server rate-limits this client: lower the rate or raise its limit",
        ),
        502 => (
            "Bad Gateway",
            "the proxy's upstream failed or closed the connection: look at the upstream",
        ),
        503 => (
            "Service Unavailable",
            "no healthy upstream, or the server sheds load: check capacity and health checks",
        ),
        504 => (
            "Gateway Timeout",
            "the upstream answered the proxy too late: look at upstream latency and the proxy's timeouts",
        ),
        500 => (
            "Internal Server Error",
            "the application failed: see its logs",
        ),
        404 => (
            "Not Found",
            "no route for this path or host: check the URL and the proxy's routing rules",
        ),
        401 | 403 => (
            "Unauthorized/Forbidden",
            "the request lacks the credentials or the permission the server wants",
        ),
        400..=499 => (
            "client error",
            "the server rejected the request: check method, headers and body",
        ),
        _ => ("server error", "the server failed to answer: see its logs"),
    };
    Some(Verdict {
        cause: "http_status",
        detail: Some(code.to_string()),
        title: format!("HTTP {code} {name}"),
        confidence: Confidence::new(Level::High, "the server answered with this status"),
        evidence: status_evidence(case, code),
        hint: hint.into(),
    })
}

/// loadgen's request, or what the plaintext of a foreign client's connection showed.
fn status_evidence(case: &Case<'_>, code: u16) -> Vec<Evidence> {
    if let Some(e) = case.request_evidence() {
        return vec![e];
    }
    let Some(k) = case.kernel else {
        return Vec::new();
    };
    let Some(t) = &k.http else {
        return Vec::new();
    };
    let n = t.statuses.get(&code).copied().unwrap_or(0);
    vec![Evidence::wire(
        k.last_unix_ns,
        format!(
            "{n} of {} {} requests on {} answered {code} (read from the client's plaintext)",
            t.requests,
            t.protocol,
            super::conn_label(k)
        ),
    )]
}

/// loadgen `protocol_error`: the server broke the protocol.
pub fn protocol_error(case: &Case<'_>) -> Option<Verdict> {
    case.request
        .filter(|r| r.class == Some(Class::ProtocolError))?;
    Some(Verdict {
        cause: "protocol_error",
        detail: None,
        title: "the server broke the HTTP protocol".into(),
        confidence: Confidence::new(Level::Medium, "the HTTP client could not parse the server's answer"),
        evidence: case.request_evidence().into_iter().collect(),
        hint: "the server answered something that is not valid HTTP (wrong port or protocol, h2c vs HTTP/1.1, ALPN, a broken proxy): see the error text".into(),
    })
}

#[cfg(test)]
mod tests {
    use events::model::{GoAway, H2Facts, Phase};

    use super::*;
    use crate::{join::LoadgenConn, rules::fixture::*};

    fn goaway_fx(code: &str, inflight: u32) -> Fx {
        let mut fx = Fx::loadgen(Class::H2Goaway, Phase::AwaitHeaders);
        let r = fx.request.as_mut().unwrap();
        r.conn.inflight = inflight;
        r.conn.conn_requests = 100;
        r.h2 = Some(H2Facts {
            stream_id: Some(13),
            goaway: Some(GoAway {
                code: code.into(),
                last_stream_id: 11,
                debug: String::new(),
            }),
            above_last_stream_id: Some(true),
            rst_code: None,
        });
        fx.conn = Some(LoadgenConn {
            conn_id: 1,
            max_concurrent_streams: Some(4),
            ..LoadgenConn::default()
        });
        fx
    }

    #[test]
    fn enhance_your_calm_mentions_streams_in_flight_and_the_server_limit() {
        let v = h2_goaway(&goaway_fx("ENHANCE_YOUR_CALM", 7).case()).unwrap();
        assert_eq!(v.cause, "h2_goaway_enhance_your_calm");
        assert_eq!(v.confidence.level, Level::High);
        let e = v
            .evidence
            .iter()
            .find(|e| e.what.contains("streams in flight"))
            .unwrap();
        assert!(
            e.what.starts_with("up to 8 streams in flight")
                && e.what.contains("SETTINGS_MAX_CONCURRENT_STREAMS 4"),
            "{}",
            e.what
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.contains("stream 13 was above last_stream_id"))
        );
        assert!(v.hint.contains("(4)"));
        // The connection's worst moment counts, not only this stream's.
        let mut fx = goaway_fx("ENHANCE_YOUR_CALM", 0);
        fx.conn.as_mut().unwrap().max_streams_in_flight = 10;
        let v = h2_goaway(&fx.case()).unwrap();
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.starts_with("up to 10 streams")),
            "{:?}",
            v.evidence
        );
    }

    #[test]
    fn goaway_codes_split_causes() {
        assert_eq!(
            h2_goaway(&goaway_fx("NO_ERROR", 0).case()).unwrap().cause,
            "h2_goaway_no_error"
        );
        let v = h2_goaway(&goaway_fx("PROTOCOL_ERROR", 0).case()).unwrap();
        assert_eq!(
            (v.cause, v.detail.as_deref()),
            ("h2_goaway", Some("PROTOCOL_ERROR"))
        );
        assert!(h2_goaway(&Fx::loadgen(Class::H2RstStream, Phase::AwaitHeaders).case()).is_none());
        assert!(h2_goaway(&Fx::kernel(&server_rst(1, 7, 0, 5)).case()).is_none());
    }

    #[test]
    fn rst_stream_by_code() {
        let mut fx = Fx::loadgen(Class::H2RstStream, Phase::AwaitHeaders);
        fx.request.as_mut().unwrap().h2 = Some(H2Facts {
            stream_id: Some(3),
            rst_code: Some("REFUSED_STREAM".into()),
            ..H2Facts::default()
        });
        let v = h2_rst_stream(&fx.case()).unwrap();
        assert_eq!(v.detail.as_deref(), Some("REFUSED_STREAM"));
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what == "RST_STREAM REFUSED_STREAM on stream 3")
        );
        assert!(v.hint.contains("safe to retry"));
        assert!(h2_rst_stream(&goaway_fx("NO_ERROR", 0).case()).is_none());
    }

    #[test]
    fn http_status_by_code_and_protocol_error() {
        let mut fx = Fx::loadgen(Class::HttpStatus, Phase::AwaitHeaders);
        fx.request.as_mut().unwrap().code = 503;
        let v = http_status(&fx.case()).unwrap();
        assert_eq!(
            (v.detail.as_deref(), v.title.as_str()),
            (Some("503"), "HTTP 503 Service Unavailable")
        );
        assert!(http_status(&Fx::loadgen(Class::Timeout, Phase::Body).case()).is_none());
        assert!(
            protocol_error(&Fx::loadgen(Class::ProtocolError, Phase::AwaitHeaders).case())
                .is_some()
        );
        assert!(
            protocol_error(&Fx::loadgen(Class::HttpStatus, Phase::AwaitHeaders).case()).is_none()
        );
    }
}
