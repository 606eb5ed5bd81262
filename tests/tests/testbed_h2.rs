//! HTTP/2 faults as an h2 client sees them: GOAWAY codes, RST_STREAM codes, TCP RST and
//! FIN mid-stream, idle close and stalls, over h2c and TLS.

mod testbed_support;

use std::io;
use std::time::Duration;

use h2::Reason;
use testbed_support::*;

const NAME: &str = testbed::DEFAULT_SERVER_NAME;

/// The I/O error kind behind an h2 error, if it is one.
fn io_kind(err: &h2::Error) -> Option<io::ErrorKind> {
    err.get_io().map(io::Error::kind)
}

#[tokio::test]
async fn h2c_prior_knowledge_serves_http2() {
    let testbed = start(&["ok:size=100000"]).await;
    let tcp = connect(testbed.addr("ok:size=100000").unwrap()).await;
    let (mut send, _conn) = h2_client(tcp).await;
    for _ in 0..3 {
        let (status, body) = h2_get(&mut send).await.expect("h2c GET");
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(body.len(), 100_000);
    }
}

#[tokio::test]
async fn status_is_sent_over_h2() {
    let testbed = start(&["status:503"]).await;
    let tcp = connect(testbed.addr("status:503").unwrap()).await;
    let (mut send, _conn) = h2_client(tcp).await;
    let (status, body) = h2_get(&mut send).await.expect("h2c GET");
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, b"Service Unavailable");
}

#[tokio::test]
async fn goaway_after_n_streams_carries_the_code() {
    let testbed = start(&["goaway:enhance_your_calm:after=2"]).await;
    let tcp = connect(testbed.addr("goaway:enhance_your_calm:after=2").unwrap()).await;
    let (mut send, conn) = h2_client(tcp).await;
    for n in 0..2 {
        let (status, _) = h2_get(&mut send)
            .await
            .unwrap_or_else(|e| panic!("stream {n} should be answered: {e}"));
        assert_eq!(status, http::StatusCode::OK);
    }
    // The GOAWAY follows the second answer; the third request fails on it, whether the
    // client had already read the frame (send fails) or not (the stream is above
    // last_stream_id and never processed).
    let err = h2_get(&mut send)
        .await
        .expect_err("third stream after GOAWAY");
    assert!(err.is_go_away(), "{err:?}");
    assert!(err.is_remote(), "{err:?}");
    assert_eq!(err.reason(), Some(Reason::ENHANCE_YOUR_CALM));
    let conn_result = bounded("h2 connection end", conn).await.unwrap();
    let conn_err = conn_result.expect_err("connection ends with the GOAWAY error");
    assert_eq!(
        conn_err.reason(),
        Some(Reason::ENHANCE_YOUR_CALM),
        "{conn_err:?}"
    );
}

#[tokio::test]
async fn goaway_at_once_over_tls() {
    let testbed = start(&["goaway:NO_ERROR"]).await;
    let (connector, _) = tls_client(&testbed, &[b"h2"]);
    let tls = tls_connect(&connector, testbed.addr("goaway:no_error").unwrap(), NAME)
        .await
        .expect("TLS");
    let (mut send, _conn) = h2_client(tls).await;
    let err = h2_get(&mut send).await.expect_err("no stream is served");
    assert!(err.is_go_away(), "{err:?}");
    assert_eq!(err.reason(), Some(Reason::NO_ERROR));
}

#[tokio::test]
async fn goaway_on_concurrency_punishes_stream_floods() {
    let testbed = start(&["goaway-on-concurrency:2"]).await;
    let addr = testbed.addr("goaway-on-concurrency:2").unwrap();

    // At the limit: two concurrent streams are both answered.
    let (mut send, _conn) = h2_client(connect(addr).await).await;
    let first = h2_send(&mut send).await.expect("send 1");
    let second = h2_send(&mut send).await.expect("send 2");
    for response in [first, second] {
        let response = bounded("response", response).await.expect("answered");
        assert_eq!(response.status(), http::StatusCode::OK);
    }

    // Above it: five concurrent streams on a new connection bring GOAWAY ENHANCE_YOUR_CALM.
    // Its last_stream_id covers every stream the server had received (RFC 9113 section
    // 6.8), so h2 reports the code on the connection, and on the streams above it; the
    // streams below it end with the connection, as broken pipes.
    let (mut send, conn) = h2_client(connect(addr).await).await;
    let mut pending = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..5 {
        match h2_send(&mut send).await {
            Ok(response) => pending.push(response),
            Err(err) => errors.push(err),
        }
    }
    for response in pending {
        if let Err(err) = bounded("response", response).await {
            errors.push(err);
        }
    }
    assert!(!errors.is_empty(), "the flood must fail streams");
    for err in &errors {
        let calm = err.is_go_away() && err.reason() == Some(Reason::ENHANCE_YOUR_CALM);
        assert!(
            calm || io_kind(err) == Some(io::ErrorKind::BrokenPipe),
            "{err:?}"
        );
    }
    let conn_err = bounded("h2 connection end", conn)
        .await
        .unwrap()
        .expect_err("connection ends with GOAWAY");
    assert!(conn_err.is_go_away(), "{conn_err:?}");
    assert_eq!(conn_err.reason(), Some(Reason::ENHANCE_YOUR_CALM));
}

#[tokio::test]
async fn rst_stream_after_n_carries_the_code() {
    let testbed = start(&["rst-stream:refused_stream:after=1"]).await;
    let tcp = connect(testbed.addr("rst-stream:refused_stream:after=1").unwrap()).await;
    let (mut send, _conn) = h2_client(tcp).await;
    let (status, _) = h2_get(&mut send).await.expect("first stream answered");
    assert_eq!(status, http::StatusCode::OK);
    // Every later stream is reset; the connection itself stays up.
    for _ in 0..2 {
        let err = h2_get(&mut send).await.expect_err("stream reset");
        assert!(err.is_reset(), "{err:?}");
        assert!(err.is_remote(), "{err:?}");
        assert_eq!(err.reason(), Some(Reason::REFUSED_STREAM));
    }
}

#[tokio::test]
async fn rst_after_n_resets_the_tcp_connection() {
    let testbed = start(&["rst:after=1"]).await;
    let tcp = connect(testbed.addr("rst:after=1").unwrap()).await;
    let (mut send, conn) = h2_client(tcp).await;
    h2_get(&mut send).await.expect("first stream answered");
    let err = h2_get(&mut send).await.expect_err("connection reset");
    assert_eq!(
        io_kind(&err),
        Some(io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    let conn_err = bounded("h2 connection end", conn)
        .await
        .unwrap()
        .expect_err("connection ends in error");
    assert_eq!(io_kind(&conn_err), Some(io::ErrorKind::ConnectionReset));
}

/// Reads an h2 response body until it ends: the bytes, and the error that ended it.
async fn read_h2_body(response: http::Response<h2::RecvStream>) -> (usize, Option<h2::Error>) {
    let mut body = response.into_body();
    let mut len_bytes = 0;
    while let Some(chunk) = bounded("h2 body", body.data()).await {
        match chunk {
            Ok(chunk) => {
                len_bytes += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(err) => return (len_bytes, Some(err)),
        }
    }
    (len_bytes, None)
}

#[tokio::test]
async fn rst_mid_response_over_tls() {
    let testbed = start(&["rst-mid-response"]).await;
    let (connector, _) = tls_client(&testbed, &[b"h2"]);
    let tls = tls_connect(&connector, testbed.addr("rst-mid-response").unwrap(), NAME)
        .await
        .expect("TLS");
    let (mut send, _conn) = h2_client(tls).await;
    let response = bounded("headers", h2_send(&mut send).await.expect("send"))
        .await
        .expect("HEADERS arrive before the reset");
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "1024");
    let (len_bytes, err) = read_h2_body(response).await;
    assert!(len_bytes < 1024, "{len_bytes}");
    let err = err.expect("the body ends in an error");
    assert_eq!(
        io_kind(&err),
        Some(io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
}

#[tokio::test]
async fn fin_mid_response_h2c() {
    let testbed = start(&["fin-mid-response"]).await;
    let tcp = connect(testbed.addr("fin-mid-response").unwrap()).await;
    let (mut send, _conn) = h2_client(tcp).await;
    let response = bounded("headers", h2_send(&mut send).await.expect("send"))
        .await
        .expect("HEADERS arrive before the FIN");
    assert_eq!(response.headers()["content-length"], "1024");
    let (len_bytes, err) = read_h2_body(response).await;
    assert_eq!(len_bytes, 512);
    // h2 reports the FIN on an open stream as a broken pipe; a reset would be a RST.
    let err = err.expect("EOF mid-body is an error");
    assert_eq!(io_kind(&err), Some(io::ErrorKind::BrokenPipe), "{err:?}");
}

#[tokio::test]
async fn close_idle_closes_only_idle_connections() {
    let testbed = start(&["close-idle:300ms"]).await;
    let tcp = connect(testbed.addr("close-idle:300ms").unwrap()).await;
    let (mut send, conn) = h2_client(tcp).await;
    h2_get(&mut send).await.expect("first request");
    h2_get(&mut send)
        .await
        .expect("second request, before the idle limit");
    let idle_from = tokio::time::Instant::now();
    // The server closes the idle connection with FIN; the client's connection ends.
    let _ = bounded("idle close", conn).await.unwrap();
    assert!(idle_from.elapsed() >= Duration::from_millis(250));
    assert!(
        h2_get(&mut send).await.is_err(),
        "the closed connection serves nothing"
    );
}

#[tokio::test]
async fn stall_never_answers_a_stream() {
    let testbed = start(&["stall"]).await;
    let tcp = connect(testbed.addr("stall").unwrap()).await;
    let (mut send, _conn) = h2_client(tcp).await;
    let response = h2_send(&mut send).await.expect("send");
    let waited = tokio::time::timeout(Duration::from_millis(500), response).await;
    assert!(waited.is_err(), "stall answered: {waited:?}");
}
