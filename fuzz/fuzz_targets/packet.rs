#![no_main]
//! Fuzz target: the frame/packet parser never panics, whatever the bytes and link type,
//! and a segment it parses can be rebuilt and parsed back to the same header fields.
//!
//! The first input byte picks the link type; the rest is the frame.
use libfuzzer_sys::fuzz_target;
use wire::packet::{self, LinkType, Packet, SegmentSpec};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let link = if pick & 1 == 0 {
        LinkType::Ethernet
    } else {
        LinkType::RawIp
    };
    let Ok(packet) = packet::parse_frame(link, bytes) else {
        return;
    };
    let Packet::Tcp(seg) = packet else {
        return;
    };
    assert!(seg.payload.len() <= bytes.len(), "payload beyond the frame");
    // Rebuild what the builders can express (no payload) and parse it back.
    let spec = SegmentSpec {
        src: seg.src,
        dst: seg.dst,
        seq: seg.seq,
        ack: seg.ack,
        flags: seg.flags,
        window: seg.window,
        ttl: seg.ttl,
        ip_id: seg.ip_id.unwrap_or(0),
        dont_fragment: seg.dont_fragment,
        options: seg.options,
    };
    let built = packet::build(&spec).expect("a parsed segment has one IP family");
    let Ok(Packet::Tcp(again)) = packet::parse_ip(&built) else {
        panic!("a built segment does not parse");
    };
    assert_eq!(
        (
            again.src,
            again.dst,
            again.seq,
            again.ack,
            again.flags,
            again.window,
            again.ttl
        ),
        (
            seg.src, seg.dst, seg.seq, seg.ack, seg.flags, seg.window, seg.ttl
        )
    );
    assert_eq!(again.options, seg.options, "options differ after a rebuild");
});
