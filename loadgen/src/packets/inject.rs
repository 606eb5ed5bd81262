//! `loadgen packets inject`: one crafted RST or FIN into a live TCP connection, made to
//! look like it came from a middlebox (chaos testing of clients, servers and the
//! analyzer).
//!
//! The receiving end accepts an RST only when its sequence number is exactly its
//! RCV.NXT (RFC 5961 section 3.2, Linux tcp_validate_incoming; anything else in the
//! window earns a challenge ACK), and a FIN when it is in order and its ACK is
//! acceptable (RFC 9293 section 3.10.7.4). Both numbers come from sniffing the
//! connection: a segment *from* the target carries its RCV.NXT as ACK and its SND.NXT
//! as SEQ + LEN; a segment *to* it carries the same numbers the other way round. An idle
//! connection sends nothing, so after a short wait the tool elicits a segment: an ACK
//! with an out-of-window sequence number, in the peer's name, which the target answers
//! with a duplicate ACK carrying both numbers (RFC 9293 section 3.10.7.4, "If an
//! incoming segment is not acceptable, an acknowledgment should be sent in reply";
//! Linux tcp_send_dupack, rate-limited to one per 500 ms per socket by
//! net.ipv4.tcp_invalid_ratelimit).
use std::{
    net::{IpAddr, SocketAddr},
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    PacketsError,
    net::{Capture, RawSender, route_to},
};
use wire::packet::{self, Packet, Segment, SegmentSpec, TcpFlags, TcpOptions};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Rst,
    Fin,
}

/// Which end receives the injected segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    ToServer,
    ToClient,
}

/// A validated `packets inject` configuration.
#[derive(Clone, Debug)]
pub struct InjectConfig {
    pub kind: Kind,
    /// The `SRC` of `--match`, the connection's client.
    pub client: SocketAddr,
    /// The `DST` of `--match`, the connection's server.
    pub server: SocketAddr,
    pub direction: Direction,
    pub ttl: u8,
    pub timeout: Duration,
}

impl InjectConfig {
    /// (the end that receives the segment, the end we pretend to be).
    pub fn ends(&self) -> (SocketAddr, SocketAddr) {
        match self.direction {
            Direction::ToClient => (self.client, self.server),
            Direction::ToServer => (self.server, self.client),
        }
    }
}

/// Why a target is refused, or `None` when it may be hit: loopback, this namespace's
/// own addresses, or one named by `--allow-target`. The injected packet is a forgery;
/// it must not leave for a host nobody named.
pub fn refusal(target: IpAddr, locals: &[IpAddr], allowed: &[IpAddr]) -> Option<String> {
    let target = target.to_canonical();
    if target.is_loopback() || locals.contains(&target) || allowed.contains(&target) {
        return None;
    }
    Some(format!(
        "refusing to inject into {target}: it is neither loopback nor an address of this \
         host; name it with --allow-target {target} if you own that host"
    ))
}

/// What the sniffing taught us about the target end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The target's RCV.NXT: the SEQ our segment must carry.
    pub rcv_nxt: u32,
    /// The target's SND.NXT (or SND.UNA): the ACK our segment carries.
    pub snd_nxt: u32,
    /// The window the end we impersonate last advertised.
    pub window: u16,
    /// (TSval, TSecr) for our segment when the connection uses timestamps (RFC 7323):
    /// the impersonated end's last TSval, and the target's.
    pub timestamps: Option<(u32, u32)>,
    /// The segment came from the target (else from its peer).
    pub from_target: bool,
}

/// The sequence state of `target` from one segment of its connection with `peer`, or
/// `None` when the segment is not of it (or is an RST, or lacks the ACK needed).
pub fn learn(seg: &Segment<'_>, target: SocketAddr, peer: SocketAddr) -> Option<Learned> {
    if seg.has(TcpFlags::RST) || !seg.has(TcpFlags::ACK) {
        return None;
    }
    let end = seg.seq.wrapping_add(seg.seq_len());
    if seg.src == target && seg.dst == peer {
        Some(Learned {
            rcv_nxt: seg.ack,
            snd_nxt: end,
            window: seg.window,
            // The target's TSecr is the peer's latest TSval: echo it back as ours.
            timestamps: seg.options.timestamps.map(|(val, ecr)| (ecr, val)),
            from_target: true,
        })
    } else if seg.src == peer && seg.dst == target {
        Some(Learned {
            rcv_nxt: end,
            snd_nxt: seg.ack,
            window: seg.window,
            timestamps: seg.options.timestamps,
            from_target: false,
        })
    } else {
        None
    }
}

/// The segment to inject, from what was learned. RST: window 0 and no options, as the
/// stacks and middleboxes that send them do. FIN: ACK, the peer's window, and the
/// timestamps the target expects (PAWS, RFC 7323 section 5, would drop it otherwise).
pub fn forge(cfg: &InjectConfig, l: &Learned, ip_id: u16) -> SegmentSpec {
    let (target, peer) = cfg.ends();
    let mut spec = match cfg.kind {
        Kind::Rst => SegmentSpec::rst(peer, target, l.rcv_nxt, l.snd_nxt),
        Kind::Fin => {
            let mut s = SegmentSpec::fin(peer, target, l.rcv_nxt, l.snd_nxt, l.window);
            s.options = TcpOptions {
                timestamps: l.timestamps,
                ..TcpOptions::default()
            };
            s
        }
    };
    spec.ttl = cfg.ttl;
    spec.ip_id = ip_id;
    spec
}

/// What was sent, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Injected {
    pub kind: Kind,
    pub direction: Direction,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: String,
    pub ttl: u8,
    pub window: u16,
    /// IPv4 identification (`None` for IPv6).
    pub ip_id: Option<u16>,
    pub interface: String,
    /// Out-of-window ACKs sent to make an idle connection speak.
    pub elicited: u32,
    /// The segment we learned from came from the target (else from its peer).
    pub learned_from_target: bool,
    pub waited_ns: u64,
}

/// How long to wait for traffic before eliciting, and between elicitations (longer than
/// tcp_invalid_ratelimit's 500 ms).
const ELICIT_AFTER: Duration = Duration::from_millis(200);
const ELICIT_EVERY: Duration = Duration::from_millis(600);

/// Sniffs the connection, then sends the segment.
pub fn run(cfg: &InjectConfig) -> Result<Injected, PacketsError> {
    let (target, peer) = cfg.ends();
    let route = route_to(target.ip())?;
    let (client, server) = (cfg.client, cfg.server);
    let capture = Capture::start(
        &route.iface,
        route.link,
        &[client.port(), server.port()],
        move |p| matches!(p, Packet::Tcp(s) if (s.src == client && s.dst == server) || (s.src == server && s.dst == client)),
    )?;
    let sender = RawSender::new(target.ip(), None)?;
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let mut next_elicit = start + ELICIT_AFTER;
    let mut elicit: Option<(u32, u32)> = None;
    let mut elicited = 0;
    let learned = loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(PacketsError::ConnectionNotSeen {
                client,
                server,
                waited_ms: u64::try_from(cfg.timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if now >= next_elicit {
            // An ACK in the peer's name, its SEQ half the sequence space away from
            // anything plausible; the ACK field random too.
            let (seq, ack) = (fastrand::u32(..), fastrand::u32(..));
            let mut spec = SegmentSpec::rst(peer, target, seq, ack);
            spec.flags = TcpFlags::ACK;
            spec.window = 512;
            spec.ttl = cfg.ttl;
            spec.ip_id = fastrand::u16(..);
            sender.send(&packet::build(&spec)?, target.ip())?;
            elicit = Some((seq, ack));
            elicited += 1;
            tracing::debug!(%target, seq, "elicitation ACK sent");
            next_elicit = now + ELICIT_EVERY;
        }
        let wait = next_elicit.min(deadline).saturating_duration_since(now);
        let frame = match capture.rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PacketsError::Io {
                    what: "the capture thread stopped".into(),
                    source: std::io::Error::other("capture ended"),
                });
            }
        };
        let Ok(Packet::Tcp(seg)) = packet::parse_frame(capture.link, &frame.bytes) else {
            continue;
        };
        // Our own elicitation ACK shows up in the capture too.
        if elicit == Some((seg.seq, seg.ack)) {
            continue;
        }
        if let Some(l) = learn(&seg, target, peer) {
            tracing::debug!(
                from_target = l.from_target,
                rcv_nxt = l.rcv_nxt,
                snd_nxt = l.snd_nxt,
                "learned"
            );
            break l;
        }
    };
    let ip_id = fastrand::u16(1..);
    let spec = forge(cfg, &learned, ip_id);
    sender.send(&packet::build(&spec)?, target.ip())?;
    Ok(Injected {
        kind: cfg.kind,
        direction: cfg.direction,
        from: spec.src,
        to: spec.dst,
        seq: spec.seq,
        ack: spec.ack,
        flags: flag_names(spec.flags),
        ttl: spec.ttl,
        window: spec.window,
        ip_id: target.is_ipv4().then_some(ip_id),
        interface: route.iface.name.clone(),
        elicited,
        learned_from_target: learned.from_target,
        waited_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
    })
}

/// `RST|ACK`-style names of TCP flags.
pub fn flag_names(flags: u8) -> String {
    let names = [
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// The one-line text report.
pub fn text(i: &Injected) -> String {
    format!(
        "loadgen packets inject: sent {} {} -> {} ({}) seq={} ack={} ttl={} window={} ip_id={} on {} \
         (learned from a segment {} the target{}, after {})\n",
        i.flags,
        i.from,
        i.to,
        match i.direction {
            Direction::ToClient => "to-client",
            Direction::ToServer => "to-server",
        },
        i.seq,
        i.ack,
        i.ttl,
        i.window,
        i.ip_id
            .map_or("none (IPv6)".into(), |id| format!("{id:#06x}")),
        i.interface,
        if i.learned_from_target { "from" } else { "to" },
        if i.elicited > 0 {
            format!(", {} out-of-window ACK(s) sent to elicit it", i.elicited)
        } else {
            String::new()
        },
        crate::report::format_ms(i.waited_ns as f64 / 1e6),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(
        src: &str,
        dst: &str,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'static [u8],
    ) -> Segment<'static> {
        Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq,
            ack,
            flags,
            window: 100,
            ttl: 64,
            ip_id: Some(1),
            dont_fragment: true,
            options: TcpOptions {
                timestamps: Some((10, 20)),
                ..TcpOptions::default()
            },
            payload,
            truncated: false,
        }
    }

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:80";

    #[test]
    fn learns_from_either_direction() {
        let (c, s) = (C.parse().unwrap(), S.parse().unwrap());
        // Server trickles 5 bytes at seq 1000; the client (target) will expect 1005.
        let l = learn(
            &seg(S, C, 1000, 7, TcpFlags::ACK | TcpFlags::PSH, b"hello"),
            c,
            s,
        )
        .unwrap();
        assert_eq!((l.rcv_nxt, l.snd_nxt, l.from_target), (1005, 7, false));
        assert_eq!(l.timestamps, Some((10, 20)));
        // The client's own ACK: its ACK is its RCV.NXT; TS swapped to echo its TSecr.
        let l = learn(&seg(C, S, 7, 1005, TcpFlags::ACK, b""), c, s).unwrap();
        assert_eq!((l.rcv_nxt, l.snd_nxt, l.from_target), (1005, 7, true));
        assert_eq!(l.timestamps, Some((20, 10)));
        // FIN occupies one sequence number.
        let l = learn(
            &seg(S, C, 1000, 7, TcpFlags::ACK | TcpFlags::FIN, b""),
            c,
            s,
        )
        .unwrap();
        assert_eq!(l.rcv_nxt, 1001);
        assert!(learn(&seg(S, C, 1, 1, TcpFlags::RST | TcpFlags::ACK, b""), c, s).is_none());
        assert!(learn(&seg(S, C, 1, 1, TcpFlags::SYN, b""), c, s).is_none());
        assert!(learn(&seg("127.0.0.1:81", C, 1, 1, TcpFlags::ACK, b""), c, s).is_none());
    }

    #[test]
    fn forged_segments_look_like_a_middlebox() {
        let cfg = InjectConfig {
            kind: Kind::Rst,
            client: C.parse().unwrap(),
            server: S.parse().unwrap(),
            direction: Direction::ToClient,
            ttl: 128,
            timeout: Duration::from_secs(1),
        };
        let l = Learned {
            rcv_nxt: 1005,
            snd_nxt: 7,
            window: 300,
            timestamps: Some((1, 2)),
            from_target: false,
        };
        let rst = forge(&cfg, &l, 0x1234);
        assert_eq!((rst.src, rst.dst), (cfg.server, cfg.client));
        assert_eq!((rst.seq, rst.ack, rst.window, rst.ttl), (1005, 7, 0, 128));
        assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
        assert_eq!(rst.options, TcpOptions::default());
        let fin = forge(
            &InjectConfig {
                kind: Kind::Fin,
                direction: Direction::ToServer,
                ..cfg
            },
            &l,
            1,
        );
        assert_eq!((fin.src, fin.dst), (cfg.client, cfg.server));
        assert_eq!(fin.flags, TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!((fin.window, fin.options.timestamps), (300, Some((1, 2))));
        assert_eq!(flag_names(fin.flags), "FIN|ACK");
    }

    #[test]
    fn refuses_foreign_targets() {
        let locals: Vec<IpAddr> = vec!["10.1.2.3".parse().unwrap()];
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "10.1.2.3",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(refusal(ok.parse().unwrap(), &locals, &[]), None, "{ok}");
        }
        let e = refusal("192.0.2.1".parse().unwrap(), &locals, &[]).unwrap();
        assert!(e.contains("--allow-target 192.0.2.1"), "{e}");
        let allowed = ["192.0.2.1".parse().unwrap()];
        assert_eq!(
            refusal("192.0.2.1".parse().unwrap(), &locals, &allowed),
            None
        );
        assert!(refusal("192.0.2.2".parse().unwrap(), &locals, &allowed).is_some());
    }
}
