//! HTTP/1.1 and TCP-level faults as a byte-level client sees them: statuses, RST and FIN
//! at chosen moments, idle closes, stalls, slow answers, full accept queues, refused ports;
//! and the testbed's own life cycle (default listeners, manifest, shutdown).

mod testbed_support;

use std::io;
use std::time::{Duration, Instant};

use testbed::{Config, Manifest, Testbed};
use testbed_support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn ok_keeps_the_connection_alive() {
    let testbed = start(&["ok", "ok:size=70000"]).await;
    let mut tcp = connect(testbed.addr("ok").unwrap()).await;
    let mut buf = Vec::new();
    for _ in 0..3 {
        let (head, body) = get(&mut tcp, &mut buf).await.expect("GET");
        assert_eq!((head.status, head.close), (200, false));
        assert_eq!(body, b"ok");
    }
    let mut tcp = connect(testbed.addr("ok:size=70000").unwrap()).await;
    let (head, body) = get(&mut tcp, &mut buf).await.expect("GET");
    assert_eq!((head.status, body.len()), (200, 70_000));
}

#[tokio::test]
async fn request_bodies_are_read_and_chunked_ones_refused() {
    let testbed = start(&["ok"]).await;
    let mut tcp = connect(testbed.addr("ok").unwrap()).await;
    let mut buf = Vec::new();
    let body = "x".repeat(100_000);
    send_post(
        &mut tcp,
        &format!("content-length: {}\r\n\r\n{body}", body.len()),
    )
    .await;
    let head = bounded("head", read_head(&mut tcp, &mut buf))
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    let (_, end) = read_body(&mut tcp, &mut buf, head.content_length).await;
    end.unwrap();
    // The body was consumed: the next request on the connection is answered too.
    let (head, _) = get(&mut tcp, &mut buf).await.expect("GET after POST");
    assert_eq!(head.status, 200);

    send_post(
        &mut tcp,
        "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let head = bounded("head", read_head(&mut tcp, &mut buf))
        .await
        .unwrap();
    assert_eq!((head.status, head.close), (501, true));
}

async fn send_post(tcp: &mut TcpStream, rest: &str) {
    use tokio::io::AsyncWriteExt;
    let request = format!("POST / HTTP/1.1\r\nhost: testbed\r\n{rest}");
    tcp.write_all(request.as_bytes()).await.expect("write POST");
}

#[tokio::test]
async fn status_answers_with_the_code() {
    let testbed = start(&["status:503"]).await;
    let mut tcp = connect(testbed.addr("status:503").unwrap()).await;
    let (head, body) = get(&mut tcp, &mut Vec::new()).await.expect("GET");
    assert_eq!(head.status, 503);
    assert_eq!(body, b"Service Unavailable");
}

#[tokio::test]
async fn goaway_over_http1_is_connection_close() {
    let testbed = start(&["goaway:no_error:after=1"]).await;
    let mut tcp = connect(testbed.addr("goaway:no_error:after=1").unwrap()).await;
    let mut buf = Vec::new();
    let (first, _) = get(&mut tcp, &mut buf).await.expect("first GET");
    assert!(!first.close);
    let (second, _) = get(&mut tcp, &mut buf).await.expect("second GET");
    assert!(second.close, "the second answer announces the close");
    let read = bounded("EOF", tcp.read(&mut [0u8; 16]))
        .await
        .expect("read");
    assert_eq!(read, 0, "FIN after `Connection: close`");
}

#[tokio::test]
async fn http2_only_faults_answer_http1() {
    let specs = ["goaway-on-concurrency:1", "rst-stream:cancel"];
    let testbed = start(&specs).await;
    for spec in specs {
        let mut tcp = connect(testbed.addr(spec).unwrap()).await;
        let (head, _) = get(&mut tcp, &mut Vec::new()).await.expect(spec);
        assert_eq!(head.status, 200, "{spec}");
    }
}

#[tokio::test]
async fn rst_after_n_resets_the_connection() {
    let testbed = start(&["rst:after=1"]).await;
    let mut tcp = connect(testbed.addr("rst:after=1").unwrap()).await;
    let mut buf = Vec::new();
    let (head, _) = get(&mut tcp, &mut buf).await.expect("first GET answered");
    assert_eq!(head.status, 200);
    let err = get(&mut tcp, &mut buf).await.expect_err("second GET reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
}

#[tokio::test]
async fn rst_at_once_over_tls() {
    let testbed = start(&["rst"]).await;
    let (connector, _) = tls_client(&testbed, &[b"http/1.1"]);
    let mut tls = tls_connect(
        &connector,
        testbed.addr("rst").unwrap(),
        testbed.server_name(),
    )
    .await
    .expect("TLS");
    let err = get(&mut tls, &mut Vec::new()).await.expect_err("reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
}

#[tokio::test]
async fn rst_mid_response_resets_inside_the_body() {
    let testbed = start(&["rst-mid-response"]).await;
    let mut tcp = connect(testbed.addr("rst-mid-response").unwrap()).await;
    let mut buf = Vec::new();
    send_get(&mut tcp, "").await;
    let head = bounded("head", read_head(&mut tcp, &mut buf))
        .await
        .unwrap();
    assert_eq!((head.status, head.content_length), (200, 1024));
    let (body, end) = bounded("body", read_body(&mut tcp, &mut buf, 1024)).await;
    assert!(body.len() < 1024);
    let err = end.expect_err("the body is cut");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
}

#[tokio::test]
async fn fin_mid_response_ends_the_body_early() {
    let testbed = start(&["fin-mid-response"]).await;
    let (connector, _) = tls_client(&testbed, &[b"http/1.1"]);
    let addr = testbed.addr("fin-mid-response").unwrap();
    let plain = connect(addr).await;
    let tls = tls_connect(&connector, addr, testbed.server_name())
        .await
        .expect("TLS");
    async fn check<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S) {
        let mut buf = Vec::new();
        send_get(&mut io, "").await;
        let head = bounded("head", read_head(&mut io, &mut buf)).await.unwrap();
        assert_eq!((head.status, head.content_length), (200, 1024));
        let (body, end) = bounded("body", read_body(&mut io, &mut buf, 1024)).await;
        assert_eq!(body.len(), 512);
        // A clean EOF (with TLS close_notify first), not a reset.
        let err = end.expect_err("EOF before Content-Length bytes");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err:?}");
    }
    check(plain).await;
    check(tls).await;
}

#[tokio::test]
async fn close_idle_closes_only_idle_connections() {
    let testbed = start(&["close-idle:300ms"]).await;
    let mut tcp = connect(testbed.addr("close-idle:300ms").unwrap()).await;
    let mut buf = Vec::new();
    get(&mut tcp, &mut buf).await.expect("first GET");
    // Within the idle limit the connection is reused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    get(&mut tcp, &mut buf)
        .await
        .expect("second GET, before the idle limit");
    // Past it, the server has closed with FIN: EOF, not a reset.
    let idle_from = Instant::now();
    let read = bounded("idle close", tcp.read(&mut [0u8; 16]))
        .await
        .expect("EOF, not an error");
    assert_eq!(read, 0);
    assert!(idle_from.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn stall_sends_nothing() {
    let testbed = start(&["stall"]).await;
    let mut tcp = connect(testbed.addr("stall").unwrap()).await;
    send_get(&mut tcp, "").await;
    let waited = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut [0u8; 16])).await;
    assert!(waited.is_err(), "stall sent something: {waited:?}");
}

#[tokio::test]
async fn slow_answers_after_the_delay() {
    let testbed = start(&["slow:300ms"]).await;
    let mut tcp = connect(testbed.addr("slow:300ms").unwrap()).await;
    let started = Instant::now();
    let (head, _) = get(&mut tcp, &mut Vec::new()).await.expect("GET");
    assert_eq!(head.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn backlog_full_connects_time_out() {
    let testbed = start(&["backlog-full"]).await;
    let addr = testbed.addr("backlog-full").unwrap();
    for _ in 0..2 {
        let connecting = TcpStream::connect(addr);
        let waited = tokio::time::timeout(Duration::from_millis(1500), connecting).await;
        assert!(waited.is_err(), "connect completed: {waited:?}");
    }
}

#[tokio::test]
async fn refused_answers_syn_with_rst() {
    let testbed = start(&["refused"]).await;
    let err = bounded(
        "connect",
        TcpStream::connect(testbed.addr("refused").unwrap()),
    )
    .await
    .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn default_config_starts_every_fault_and_writes_a_manifest() {
    let testbed = Testbed::start(Config::default()).await.expect("start");
    let specs = testbed::default_specs();
    assert_eq!(testbed.listeners().len(), specs.len());
    let mut ports: Vec<u16> = testbed.listeners().iter().map(|l| l.addr.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), specs.len(), "one port per listener");
    assert_eq!(
        std::fs::read_to_string(testbed.ca_path()).unwrap(),
        testbed.ca_pem()
    );

    let dir = testbed.ca_path().parent().unwrap().to_owned();
    let path = dir.join("manifest.json");
    testbed.write_manifest(&path).expect("write manifest");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(manifest, testbed.manifest());
    assert_eq!(manifest.name, testbed::DEFAULT_SERVER_NAME);
    assert_eq!(manifest.listeners[0].spec, "ok");
    std::fs::remove_file(&path).unwrap();

    let ok = testbed.addr("ok").unwrap();
    testbed.shutdown().await;
    let after = bounded("connect after shutdown", TcpStream::connect(ok)).await;
    assert_eq!(
        after.expect_err("listener closed").kind(),
        io::ErrorKind::ConnectionRefused
    );
    assert!(!dir.exists(), "the temporary CA directory is removed");
}

#[tokio::test]
async fn shutdown_ends_open_connections() {
    let testbed = start(&["stall"]).await;
    let mut tcp = connect(testbed.addr("stall").unwrap()).await;
    send_get(&mut tcp, "").await;
    bounded("shutdown", testbed.shutdown()).await;
    let read = bounded("close at shutdown", tcp.read(&mut [0u8; 16])).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
