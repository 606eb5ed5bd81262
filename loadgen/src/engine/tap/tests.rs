//! Tests of the frame tap: a real h2 client and server through it, and crafted bytes.
use bytes::Bytes;
use h2::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;
use wire::h2frame::encode_frame as frame;

/// Reads everything `server_bytes` holds through a tap in `mode`.
async fn tap_bytes(mode: TapMode, server_bytes: &[u8]) -> TapHandle {
    let (client, mut server) = duplex(server_bytes.len() + 1);
    let (mut tap, handle) = Tap::new(client, mode);
    server
        .write_all(server_bytes)
        .await
        .expect("write to the duplex");
    drop(server);
    let mut read = Vec::new();
    tap.read_to_end(&mut read)
        .await
        .expect("read through the tap");
    assert_eq!(read, server_bytes, "the tap changed the bytes");
    assert_eq!(handle.bytes_read(), server_bytes.len() as u64, "bytes_read");
    handle
}

fn goaway_frame(last_stream_id: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let payload = [
        &last_stream_id.to_be_bytes()[..],
        &code.to_be_bytes(),
        debug,
    ]
    .concat();
    frame(0x7, 0, 0, &payload)
}

/// The server side: answers the first stream, refuses the second with REFUSED_STREAM,
/// and once the client saw the reset, ends with GOAWAY ENHANCE_YOUR_CALM.
async fn serve_then_refuse_then_goaway(
    server_io: Tap<tokio::io::DuplexStream>,
    refused_rx: tokio::sync::oneshot::Receiver<()>,
) {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(7)
        .handshake::<_, Bytes>(server_io)
        .await
        .expect("server handshake");
    let (_, mut respond) = conn
        .accept()
        .await
        .expect("a first stream")
        .expect("accept");
    let response = http::Response::new(());
    let mut body = respond
        .send_response(response, false)
        .expect("send headers");
    body.send_data(Bytes::from_static(b"hello"), true)
        .expect("send body");
    let (_, mut respond) = conn
        .accept()
        .await
        .expect("a second stream")
        .expect("accept");
    respond.send_reset(Reason::REFUSED_STREAM);
    // Keep the connection going until the client saw the reset: abrupt_shutdown
    // drops frames still queued, and the RST_STREAM must reach the wire first.
    tokio::select! {
        _ = refused_rx => {}
        _ = conn.accept() => panic!("the connection ended before the client saw the reset"),
    }
    conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
    while let Some(Ok(_)) = conn.accept().await {}
}

/// The client side: one request answered, one refused, then the connection ends with
/// the server's GOAWAY.
async fn request_twice(
    client_io: Tap<tokio::io::DuplexStream>,
    refused_tx: tokio::sync::oneshot::Sender<()>,
) {
    let (send, conn) = h2::client::handshake(client_io)
        .await
        .expect("client handshake");
    let conn = tokio::spawn(conn);
    let request = || {
        http::Request::get("https://example.test/")
            .body(())
            .unwrap()
    };
    let mut send = send.ready().await.expect("ready for the first request");
    let (response, _) = send.send_request(request(), true).expect("first request");
    let mut body = response.await.expect("first response").into_body();
    while let Some(chunk) = body.data().await {
        chunk.expect("first response body");
    }
    let mut send = send.ready().await.expect("ready for the second request");
    let (response, _) = send.send_request(request(), true).expect("second request");
    let refused = response
        .await
        .expect_err("the server refuses the second stream");
    assert_eq!(refused.reason(), Some(Reason::REFUSED_STREAM), "{refused}");
    refused_tx
        .send(())
        .expect("tell the server the reset arrived");
    let closed = conn.await.expect("client connection task");
    assert!(
        closed.is_err(),
        "client connection ended without the GOAWAY error"
    );
}

#[tokio::test]
async fn h2_client_through_the_tap_sees_settings_reset_and_goaway() {
    let (client_io, server_io) = duplex(64 * 1024);
    let (client_io, handle) = Tap::new(client_io, TapMode::Http2);
    let (server_io, server_counts) = Tap::new(server_io, TapMode::CountOnly);
    let (refused_tx, refused_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_then_refuse_then_goaway(server_io, refused_rx));
    request_twice(client_io, refused_tx).await;
    server.await.expect("server task");

    assert_eq!(
        handle.max_concurrent_streams(),
        Some(7),
        "max_concurrent_streams"
    );
    assert_eq!(
        handle.rst_code(3),
        Some(ErrorCode::REFUSED_STREAM),
        "rst_code(3)"
    );
    assert_eq!(handle.rst_code(1), None, "stream 1 was not reset");
    let goaway = GoAway {
        code: "ENHANCE_YOUR_CALM".into(),
        last_stream_id: 3,
        debug: "".into(),
    };
    assert_eq!(handle.goaway(), Some(goaway.clone()), "goaway");
    let frames = handle.take_frames();
    let [FrameFacts::Settings { settings }, rst, last] = &frames[..] else {
        panic!("expected SETTINGS, RST_STREAM, GOAWAY; got {frames:?}");
    };
    assert!(
        settings.contains(&("SETTINGS_MAX_CONCURRENT_STREAMS".to_owned(), 7)),
        "settings {settings:?}"
    );
    let want_rst = FrameFacts::RstStream {
        stream_id: 3,
        code: "REFUSED_STREAM".into(),
    };
    assert_eq!(
        (rst, last),
        (&want_rst, &FrameFacts::Goaway(goaway)),
        "frames in order"
    );
    assert_eq!(handle.take_frames(), [], "take_frames drains the queue");
    assert_eq!(
        (handle.frames_dropped(), handle.parse_error()),
        (0, None),
        "clean run"
    );
    assert!(
        handle.bytes_read() > 0 && handle.bytes_written() > 0,
        "byte counters"
    );
    assert_eq!(
        handle.bytes_read(),
        server_counts.bytes_written(),
        "bytes from the server"
    );
    assert_eq!(
        handle.bytes_written(),
        server_counts.bytes_read(),
        "bytes to the server"
    );
}

#[tokio::test]
async fn the_last_goaway_wins_and_queues_are_bounded() {
    let mut bytes = goaway_frame((1 << 31) - 1, 0, b"");
    for n in 0..FRAMES_QUEUED_MAX + 10 {
        bytes.extend(frame(0x6, 0, 0, &(n as u64).to_be_bytes()));
    }
    for stream_id in (1..).step_by(2).take(RST_CODES_KEPT + 1) {
        bytes.extend(frame(0x3, 0, stream_id, &8u32.to_be_bytes()));
    }
    bytes.extend(goaway_frame(0x8000_0007, 0xb, "calm \u{1f9d8}".as_bytes()));
    let handle = tap_bytes(TapMode::Http2, &bytes).await;

    let want = GoAway {
        code: "ENHANCE_YOUR_CALM".into(),
        last_stream_id: 7,
        debug: "calm \u{1f9d8}".into(),
    };
    assert_eq!(handle.goaway(), Some(want.clone()), "the second GOAWAY");
    assert_eq!(handle.rst_code(1), None, "the oldest reset is evicted");
    assert_eq!(handle.rst_code(3), Some(ErrorCode::CANCEL), "rst_code(3)");
    assert_eq!(
        handle.rst_code(2 * RST_CODES_KEPT as u32 + 1),
        Some(ErrorCode(8)),
        "newest"
    );
    let frames = handle.take_frames();
    assert_eq!(frames.len(), FRAMES_QUEUED_MAX, "queued frames");
    assert_eq!(
        frames.last(),
        Some(&FrameFacts::Goaway(want)),
        "the last GOAWAY is kept"
    );
    // Two GOAWAYs, the PINGs and the RST_STREAMs.
    let sent = 2 + FRAMES_QUEUED_MAX + 10 + RST_CODES_KEPT + 1;
    assert_eq!(
        handle.frames_dropped(),
        (sent - FRAMES_QUEUED_MAX) as u64,
        "frames_dropped"
    );
    assert_eq!(
        handle.max_concurrent_streams(),
        None,
        "no SETTINGS were sent"
    );
}

#[tokio::test]
async fn non_http2_bytes_are_a_parse_error_and_count_only_decodes_nothing() {
    let http1 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    let handle = tap_bytes(TapMode::Http2, http1).await;
    let error = handle
        .parse_error()
        .expect("HTTP/1.1 response reported as a parse error");
    assert!(error.contains("RFC 9113"), "parse error {error:?}");
    assert_eq!(handle.take_frames(), [], "no frames from HTTP/1.1");

    let frames = [
        frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 9]),
        goaway_frame(0, 0, b""),
    ]
    .concat();
    let handle = tap_bytes(TapMode::CountOnly, &frames).await;
    let seen = (
        handle.take_frames(),
        handle.goaway(),
        handle.max_concurrent_streams(),
    );
    assert_eq!(seen, (vec![], None, None), "CountOnly decoded frames");
    assert_eq!(handle.parse_error(), None, "CountOnly parse error");
}

#[tokio::test]
async fn writes_are_counted_and_passed_through() {
    let (client, mut server) = duplex(1024);
    let (mut tap, handle) = Tap::new(client, TapMode::Http2);
    tap.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    let slices = [IoSlice::new(b"\r\nSM"), IoSlice::new(b"\r\n\r\n")];
    let n = tap.write_vectored(&slices).await.expect("vectored write");
    tap.flush().await.expect("flush");
    tap.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    server
        .read_to_end(&mut got)
        .await
        .expect("read the server side");
    assert_eq!(got.len(), 16 + n, "bytes that reached the server");
    assert_eq!(handle.bytes_written(), got.len() as u64, "bytes_written");
    assert_eq!(
        tap.is_write_vectored(),
        tap.get_ref().is_write_vectored(),
        "delegated"
    );
}
