//! Tests of the host counters, the port range and the socket census: parsers against
//! text captured from Linux 6.18 (x86_64), malformed inputs, delta math, and live tests
//! that make the kernel show loopback sockets and counters.
use std::{
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use super::{
    counters::{NETSTAT_PATH, SNMP_PATH, *},
    ports::{PORT_RANGE_PATH, RESERVED_PORTS_PATH, *},
    sockets::{TCP_PATH, parse_socket_line, *},
    *,
};
use crate::names::TcpState;

// Lines of /proc/net/netstat and /proc/net/snmp on Linux 6.18.44 (x86_64).
const NETSTAT: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps\n\
TcpExt: 0 0 0 0 0 0 0 0 0 0 3488 0 0 0 0 0 0 0 0 376 0 446 170 170 634772 13039 551513 0 0 0 0 0 0 0 0 0 0 20 0 0 0 0 0 71 537 0 0 0 0 164 446 0 427 0 370 282 0 0 0 0 0 0 0 0 419 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 50822 1 0 0 0 0 0 0 0 0 0 0 0 3 0 1229 90 90 67 68 752707 0 0 0 0 0 0 0 0 0 0 0 0 0 0 756144 0 0 0 0 0 0 71 0 427 0 0 0 0 0 0 0 0 0\n\
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps\n\
IpExt: 0 0 0 0 0 0 550468528 115389338 0 0 0 0 0 850047 0 0 0 0\n\
";
const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits\n\
Ip: 2 64 850047 0 0 0 0 0 850047 845807 0 0 0 0 0 0 0 0 0 845807\n\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
Tcp: 1 200 120000 -1 4432 4122 142 1636 3 849960 845275 495 0 1387 0\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
Udp: 135 0 0 137 0 0 0 0 0\n\
";

// Lines of /proc/net/tcp and /proc/net/tcp6 on the same machine (little-endian): a
// listener, both ends of a loopback connection, a TIME_WAIT socket, an IPv6 loopback
// connection and the IPv4-mapped end of a dual-stack listener's connection.
const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   2: 0100007F:CC17 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77521 1 00000000214ceaad 100 0 0 10 0                     
 173: 0100007F:BFF0 0100007F:CC17 01 00000000:00000000 00:00000000 00000000     0        0 77523 2 000000006aa90992 20 0 0 10 -1                     
 174: 0100007F:BFF4 0100007F:CC17 06 00000000:00000000 03:0000175C 00000000     0        0 0 3 00000000173bc979                                      
 214: 0100007F:CC17 0100007F:BFF0 01 00000000:00000000 00:00000000 00000000     0        0 77524 1 0000000028d74736 20 0 0 10 -1                     
 977: 0100007F:BE2C 0100007F:DAAD 01 00000000:00000000 00:00000000 00000000     0        0 77527 2 00000000d72cabb8 20 0 0 10 -1                     
";
const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:DAAD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77522 1 00000000b4311e96 100 0 0 10 0
   1: 00000000000000000000000001000000:B6FA 00000000000000000000000001000000:DAAD 01 00000000:00000000 00:00000000 00000000     0        0 77525 2 00000000974ec33b 20 0 0 10 -1
   2: 0000000000000000FFFF00000100007F:DAAD 0000000000000000FFFF00000100007F:BE2C 01 00000000:00000000 00:00000000 00000000     0        0 77528 1 000000009c5fb7ac 20 0 0 10 -1
   3: 00000000000000000000000001000000:DAAD 00000000000000000000000001000000:B6FA 01 00000000:00000000 00:00000000 00000000     0        0 77526 1 0000000082021563 20 0 0 10 -1
";

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn malformed(e: HostError) -> (String, usize, String) {
    match e {
        HostError::Malformed { path, line, reason } => (path.display().to_string(), line, reason),
        HostError::Read { path, source } => panic!("read error on {}: {source}", path.display()),
    }
}

// ---- /proc/net/netstat, /proc/net/snmp ----

#[test]
fn parses_netstat_and_snmp() {
    let s = Snapshot::parse(NETSTAT, SNMP).unwrap();
    assert_eq!(s.get("TcpExt.ListenOverflows"), Some(170));
    assert_eq!(s.get("TcpExt.ListenDrops"), Some(170));
    assert_eq!(s.get("TcpExt.TW"), Some(3488));
    assert_eq!(s.get("TcpExt.TCPAbortOnData"), Some(370));
    assert_eq!(s.get("TcpExt.TCPAbortOnClose"), Some(282));
    assert_eq!(s.get("TcpExt.TCPSynRetrans"), Some(68));
    assert_eq!(s.get("TcpExt.TCPAODroppedIcmps"), Some(0));
    assert_eq!(s.get("IpExt.InOctets"), Some(550_468_528));
    assert_eq!(s.get("Tcp.RetransSegs"), Some(495));
    assert_eq!(s.get("Tcp.ActiveOpens"), Some(4432));
    assert_eq!(s.get("Tcp.OutRsts"), Some(1387));
    assert_eq!(s.get("Udp.InDatagrams"), Some(135));
    // The one negative value is a setting, kept apart.
    assert_eq!(s.get("Tcp.MaxConn"), None);
    assert_eq!(s.signed.get("Tcp.MaxConn"), Some(&-1));
    assert_eq!(s.signed.len(), 1);
    // Every curated counter exists on 6.18.
    for (name, _) in CURATED_COUNTERS {
        assert!(s.get(name).is_some(), "{name} missing");
    }
    assert_eq!(s.get("TcpExt.NoSuchCounter"), None);
}

#[test]
fn parses_full_u64_and_blank_lines() {
    let s = Snapshot::parse("\nTcpExt: A B\nTcpExt: 18446744073709551615 0\n\n", "").unwrap();
    assert_eq!(s.get("TcpExt.A"), Some(u64::MAX));
    assert_eq!(s.get("TcpExt.B"), Some(0));
    assert_eq!(s.counters.len(), 2);
}

#[test]
fn malformed_counter_files_name_file_and_line() {
    let snmp = |text: &str| malformed(Snapshot::parse("", text).unwrap_err());
    let netstat = |text: &str| malformed(Snapshot::parse(text, "").unwrap_err());

    let (path, line, reason) = snmp("Tcp A B\nTcp: 1 2\n");
    assert_eq!((path.as_str(), line), (SNMP_PATH, 1));
    assert!(reason.contains("no `:`"), "{reason}");

    let (path, line, reason) = snmp("Tcp: A B\nUdp: 1 2\n");
    assert_eq!((path.as_str(), line), (SNMP_PATH, 2));
    assert!(
        reason.contains("`Udp`") && reason.contains("`Tcp`"),
        "{reason}"
    );

    let (_, line, reason) = snmp("Tcp: A B\nTcp: 1\n");
    assert_eq!(line, 2);
    assert!(
        reason.contains("2 names") && reason.contains("1 values"),
        "{reason}"
    );

    let (_, line, reason) = snmp("Tcp: A B\nTcp: 1 x\n");
    assert_eq!(line, 2);
    assert!(
        reason.contains("`x`") && reason.contains("Tcp.B"),
        "{reason}"
    );

    let (_, line, reason) = snmp("Tcp: A\nTcp: 1.5\n");
    assert_eq!(line, 2);
    assert!(reason.contains("not an integer"), "{reason}");

    // Odd number of lines: the header without values is named.
    let (_, line, reason) = snmp("Tcp: A B\nTcp: 1 2\nUdp: X\n");
    assert_eq!(line, 3);
    assert!(reason.contains("odd number of lines"), "{reason}");

    // A values line where a header is expected.
    let (_, line, reason) = netstat("TcpExt: 1 2\nTcpExt: 3 4\n");
    assert_eq!(line, 1);
    assert!(reason.contains("counter name"), "{reason}");

    let (path, line, _) = netstat(": A\n: 1\n");
    assert_eq!((path.as_str(), line), (NETSTAT_PATH, 1));

    // The real files, cut: the error is in the file that was cut.
    let cut = &NETSTAT[..NETSTAT.len() - 50];
    let err = Snapshot::parse(cut, SNMP).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("/proc/net/netstat:4: "), "{msg}");
    let (_, line, _) = malformed(Snapshot::parse(NETSTAT, &SNMP[..SNMP.len() - 20]).unwrap_err());
    assert_eq!(line, 6);
}

// ---- deltas ----

#[test]
fn delta_math() {
    let before = Snapshot::parse(NETSTAT, SNMP).unwrap();
    let mut after = before.clone();
    after.counters.insert("TcpExt.ListenOverflows".into(), 180);
    after.counters.insert("TcpExt.ListenDrops".into(), 171);
    after.counters.insert("Tcp.RetransSegs".into(), 10); // went backwards
    after.counters.remove("TcpExt.TCPZeroWindowDrop"); // vanished
    let mut before = before;
    before.counters.remove("TcpExt.TCPRcvQDrop"); // appeared
    before.counters.remove("TcpExt.TCPAbortFailed");
    after.counters.remove("TcpExt.TCPAbortFailed"); // absent on this kernel

    let d = delta(&before, &after);
    assert_eq!(d.counters.len(), CURATED_COUNTERS.len());
    assert_eq!(d.counters.len(), 28);
    for (c, (name, meaning)) in d.counters.iter().zip(CURATED_COUNTERS) {
        assert_eq!(c.name, *name);
        assert_eq!(c.meaning, *meaning);
        assert!(!c.meaning.is_empty() && !c.meaning.contains('\n'));
    }

    let lo = d.get("TcpExt.ListenOverflows").unwrap();
    assert_eq!(
        (lo.before, lo.after, lo.delta),
        (Some(170), Some(180), Some(10))
    );
    assert_eq!(lo.status, DeltaStatus::Increased);
    assert!(lo.nonzero);

    let rs = d.get("Tcp.RetransSegs").unwrap();
    assert_eq!(
        (rs.before, rs.after, rs.delta),
        (Some(495), Some(10), Some(0))
    );
    assert_eq!(rs.status, DeltaStatus::WentBackwards);
    assert!(!rs.nonzero);

    let tw = d.get("TcpExt.TW").unwrap();
    assert_eq!(
        (tw.delta, tw.status, tw.nonzero),
        (Some(0), DeltaStatus::Unchanged, false)
    );

    let zw = d.get("TcpExt.TCPZeroWindowDrop").unwrap();
    assert_eq!((zw.before, zw.after, zw.delta), (Some(0), None, None));
    assert_eq!(zw.status, DeltaStatus::Absent);
    let rq = d.get("TcpExt.TCPRcvQDrop").unwrap();
    assert_eq!(
        (rq.before, rq.after, rq.status),
        (None, Some(0), DeltaStatus::Absent)
    );
    let af = d.get("TcpExt.TCPAbortFailed").unwrap();
    assert_eq!(
        (af.before, af.after, af.delta, af.nonzero),
        (None, None, None, false)
    );

    let nonzero: Vec<&str> = d.nonzero().map(|c| c.name.as_str()).collect();
    assert_eq!(nonzero, ["TcpExt.ListenOverflows", "TcpExt.ListenDrops"]);
    let absent: Vec<&str> = d.absent().map(|c| c.name.as_str()).collect();
    assert_eq!(
        absent,
        [
            "TcpExt.TCPAbortFailed",
            "TcpExt.TCPRcvQDrop",
            "TcpExt.TCPZeroWindowDrop"
        ]
    );
    assert_eq!(d.went_backwards().count(), 1);
}

#[test]
fn delta_json_shape() {
    let before = Snapshot::parse("TcpExt: ListenOverflows\nTcpExt: 1\n", "").unwrap();
    let after = Snapshot::parse("TcpExt: ListenOverflows\nTcpExt: 4\n", "").unwrap();
    let d = delta(&before, &after);
    let v = serde_json::to_value(&d).unwrap();
    let first = &v["counters"][0];
    assert_eq!(first["name"], "TcpExt.ListenOverflows");
    assert_eq!(first["before"], 1);
    assert_eq!(first["after"], 4);
    assert_eq!(first["delta"], 3);
    assert_eq!(first["status"], "increased");
    assert_eq!(first["nonzero"], true);
    assert!(first["meaning"].as_str().unwrap().contains("accept queue"));
    let absent = &v["counters"][1];
    assert_eq!(absent["name"], "TcpExt.ListenDrops");
    assert_eq!(absent["status"], "absent");
    assert!(absent["before"].is_null() && absent["delta"].is_null());
    let back: CounterDeltas = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
}

// ---- ephemeral ports ----

#[test]
fn parses_port_range_and_reserved_ports() {
    let mut r = PortRange::parse("32768\t60999\n").unwrap();
    assert_eq!(
        (r.low, r.high, r.size(), r.available()),
        (32768, 60999, 28232, 28232)
    );
    assert!(r.contains(32768) && r.contains(60999) && !r.contains(61000) && !r.contains(80));

    assert_eq!(PortRange::parse_reserved("\n").unwrap(), []);
    r.reserved = PortRange::parse_reserved("40000-40009,8080,40005-40019, 33000\n").unwrap();
    assert_eq!(
        r.reserved,
        [
            PortSpan {
                first: 8080,
                last: 8080
            },
            PortSpan {
                first: 33000,
                last: 33000
            },
            PortSpan {
                first: 40000,
                last: 40019
            },
        ]
    );
    // 8080 is outside the range; 1 + 20 reserved ports inside.
    assert_eq!(r.available(), 28232 - 21);
    assert!(!r.contains(33000) && !r.contains(40010) && r.contains(40020));
}

#[test]
fn malformed_port_ranges() {
    for (text, needle) in [
        ("", "two ports"),
        ("32768\n", "two ports"),
        ("1 2 3", "two ports"),
        ("a 60999", "`a` is not a port"),
        ("32768 70000", "`70000` is not a port"),
        ("0 100", "`0` is not a port"),
        ("-1 100", "`-1` is not a port"),
        ("60999 32768", "above its end"),
    ] {
        let (path, line, reason) = malformed(PortRange::parse(text).unwrap_err());
        assert_eq!((path.as_str(), line), (PORT_RANGE_PATH, 1), "{text:?}");
        assert!(reason.contains(needle), "{text:?}: {reason}");
    }
    for (text, needle) in [("80,x", "`x`"), ("9000-", "``"), ("9100-9000", "reversed")] {
        let (path, _, reason) = malformed(PortRange::parse_reserved(text).unwrap_err());
        assert_eq!(path, RESERVED_PORTS_PATH);
        assert!(reason.contains(needle), "{text:?}: {reason}");
    }
}

// ---- /proc/net/tcp{,6} lines ----

#[cfg(target_endian = "little")]
#[test]
fn parses_socket_lines() {
    let v4 = TCP.lines().nth(2).unwrap();
    let s = parse_socket_line(v4).unwrap();
    assert_eq!(s.local, "127.0.0.1:49136".parse().unwrap());
    assert_eq!(s.remote, "127.0.0.1:52247".parse().unwrap());
    assert_eq!(s.state, TcpState::Established);

    let listen = parse_socket_line(TCP.lines().nth(1).unwrap()).unwrap();
    assert_eq!(listen.state, TcpState::Listen);
    assert_eq!(listen.remote, "0.0.0.0:0".parse().unwrap());

    // TIME_WAIT lines are shorter (no socket behind them).
    let tw = parse_socket_line(TCP.lines().nth(3).unwrap()).unwrap();
    assert_eq!(tw.state, TcpState::TimeWait);
    assert_eq!(tw.local.port(), 0xBFF4);

    let v6 = parse_socket_line(TCP6.lines().nth(2).unwrap()).unwrap();
    assert_eq!(v6.local, "[::1]:46842".parse().unwrap());
    assert_eq!(v6.remote, "[::1]:55981".parse().unwrap());

    let any6 = parse_socket_line(TCP6.lines().nth(1).unwrap()).unwrap();
    assert_eq!(any6.local, "[::]:55981".parse().unwrap());
    assert_eq!(any6.state, TcpState::Listen);

    // ::ffff:127.0.0.1 is counted as 127.0.0.1.
    let mapped = parse_socket_line(TCP6.lines().nth(3).unwrap()).unwrap();
    assert_eq!(mapped.local, "127.0.0.1:55981".parse().unwrap());
    assert_eq!(mapped.remote, "127.0.0.1:48684".parse().unwrap());

    // A global IPv6 address: 2001:db8::1 word by word in native (little-endian) order.
    let global = parse_socket_line(
        "   0: B80D0120000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A \
         00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
    )
    .unwrap();
    assert_eq!(global.local, "[2001:db8::1]:443".parse().unwrap());
}

#[test]
fn rejects_bad_socket_lines() {
    let full = " 173: 0100007F:BFF0 0100007F:CC17 01 00000000:00000000 00:00000000 00000000     0        0 77523 2 0 20 0 0 10 -1";
    assert!(parse_socket_line(full).is_ok());
    for (line, needle) in [
        (
            " 173: 0100007F:BFF0 0100007F:CC17 01 00000000:00000000 00:0000",
            "truncated",
        ),
        (" 173: 0100007F:BFF0 0100007F:CC", "truncated"),
        (" 173: 0100007F:BFF0", "before the rem_address"),
        (
            " 173 0100007F:BFF0 0100007F:CC17 01 0 0 0 0 0 0",
            "slot number",
        ),
        (
            " x: 0100007F:BFF0 0100007F:CC17 01 0 0 0 0 0 0",
            "slot number",
        ),
        (
            " 1: 0100007G:BFF0 0100007F:CC17 01 0 0 0 0 0 0",
            "hex digits",
        ),
        (
            " 1: 0100007F:+FF0 0100007F:CC17 01 0 0 0 0 0 0",
            "hex digits",
        ),
        (
            " 1: 0100007F:BFF00 0100007F:CC17 01 0 0 0 0 0 0",
            "hex digits",
        ),
        (" 1: 0100007F 0100007F:CC17 01 0 0 0 0 0 0", "no `:port`"),
        (
            " 1: 00007F:BFF0 0100007F:CC17 01 0 0 0 0 0 0",
            "expected 8 or 32",
        ),
        (
            " 1: 0100007F:BFF0 0100007F:CC17 1F 0 0 0 0 0 0",
            "unknown TCP state",
        ),
        (
            " 1: 0100007F:BFF0 0100007F:CC17 00 0 0 0 0 0 0",
            "unknown TCP state",
        ),
        (
            " 1: 0100007F:BFF0 0100007F:CC17 ZZ 0 0 0 0 0 0",
            "state `ZZ`",
        ),
    ] {
        let e = parse_socket_line(line).unwrap_err();
        assert!(e.contains(needle), "{line:?}: {e}");
    }
}

#[test]
fn state_codes_round_trip() {
    assert_eq!(TcpState::Unknown.code(), None);
    for s in TcpState::KNOWN {
        assert_eq!(TcpState::from_code(s.code().unwrap()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    assert_eq!(TcpState::Established.code(), Some(1));
    assert_eq!(TcpState::TimeWait.code(), Some(6));
    assert_eq!(TcpState::Listen.code(), Some(0x0A));
    assert_eq!(TcpState::NewSynRecv.code(), Some(0x0C));
    assert_eq!(TcpState::from_code(0), None);
    assert_eq!(TcpState::from_code(14), None);
}

// ---- census ----

fn census(files: &[(&str, &str)]) -> SocketCensus {
    let mut c = SocketCensus::new();
    for (path, text) in files {
        c.add_reader(path, text.as_bytes()).unwrap();
    }
    c
}

#[cfg(target_endian = "little")]
#[test]
fn census_of_fixtures() {
    let c = census(&[(TCP_PATH, TCP), ("/proc/net/tcp6", TCP6)]);
    assert_eq!(c.total(), 9);
    assert_eq!(c.parse_errors(), 0);
    assert_eq!(c.first_parse_error(), None);
    assert_eq!(c.states().get(TcpState::Listen), 2);
    assert_eq!(c.states().get(TcpState::Established), 6);
    assert_eq!(c.states().get(TcpState::TimeWait), 1);

    let listener4: SocketAddr = "127.0.0.1:52247".parse().unwrap();
    let d = c.destination(listener4).unwrap();
    assert_eq!((d.sockets, d.time_wait), (2, 1));
    assert_eq!(d.states.get(TcpState::Established), 1);

    // The dual-stack listener's peer at 127.0.0.1:48684 is listed in tcp6 as
    // ::ffff:127.0.0.1; it is one destination with the IPv4 form.
    let peer: SocketAddr = "127.0.0.1:48684".parse().unwrap();
    assert_eq!(c.destination(peer).unwrap().sockets, 1);
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:48684".parse().unwrap();
    assert_eq!(c.destination(mapped).unwrap().destination, peer);

    let tw = c.top_by_time_wait(10);
    assert_eq!(tw.len(), 1);
    assert_eq!(tw[0].destination, listener4);
    let top = c.top_by_sockets(2);
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].destination, listener4);
    assert_eq!(top[0].sockets, 2);
    assert_eq!(c.destination_count(), 6);

    let v = serde_json::to_value(c.summary(3)).unwrap();
    assert_eq!(v["sockets"], 9);
    assert_eq!(v["states"]["ESTABLISHED"], 6);
    assert_eq!(v["states"]["FIN_WAIT1"], 0);
    assert_eq!(v["top_time_wait"][0]["destination"], "127.0.0.1:52247");
    assert_eq!(v["top_time_wait"][0]["states"]["TIME_WAIT"], 1);
    assert_eq!(v["parse_errors"], 0);
    assert!(v.get("first_parse_error").is_none());
    let back: CensusSummary = serde_json::from_value(v).unwrap();
    assert_eq!(back, c.summary(3));
}

#[test]
fn census_counts_bad_lines_and_rejects_bad_headers() {
    let header = TCP.lines().next().unwrap();
    let text = format!(
        "{header}\n\
         \x20  0: 0100007F:BFF0 0100007F:CC17 01 00000000:00000000 00:00000000 00000000 0 0 1 2 0\n\
         \x20  1: 0100007F:BFF1 0100007F:CC17 01 00000000:0000\n\
         \x20  2: 0100007F:BFF2 0100007F:CC17 01 00000000:00000000 00:00000000 00000000 0 0 1 2 0\n\
         \x20  3: 0100007F:BFF3 0100007F:CC"
    );
    let c = census(&[("/proc/net/tcp", &text)]);
    assert_eq!(c.total(), 2);
    assert_eq!(c.parse_errors(), 2);
    let first = c.first_parse_error().unwrap();
    assert!(first.starts_with("/proc/net/tcp:3: "), "{first}");
    assert!(first.contains("truncated"), "{first}");

    let mut bytes = format!("{header}\n").into_bytes();
    bytes.extend_from_slice(b"   0: \xff\xfe\n");
    let mut c = SocketCensus::new();
    c.add_reader("/proc/net/tcp", &bytes[..]).unwrap();
    assert_eq!(c.parse_errors(), 1);
    assert!(c.first_parse_error().unwrap().contains("not UTF-8"));

    for bad in [
        "",
        "   0: 0100007F:BFF0 0100007F:CC17 01 0 0 0 0 0 0 0\n",
        "garbage\n",
    ] {
        let e = SocketCensus::new()
            .add_reader("/proc/net/tcp", bad.as_bytes())
            .unwrap_err();
        let (path, line, reason) = malformed(e);
        assert_eq!((path.as_str(), line), ("/proc/net/tcp", 1));
        assert!(reason.contains("header"), "{reason}");
    }
}

/// A /proc/net/tcp line from 127.0.0.x:`lport` to 10.0.0.1:443 (little-endian hex).
fn line(slot: usize, last_octet: u8, lport: u16, state: u8) -> String {
    format!(
        "{slot:4}: {last_octet:02X}00007F:{lport:04X} 0100000A:01BB {state:02X} 00000000:00000000 \
         00:00000000 00000000     0        0 0 3 0000000000000000\n"
    )
}

#[cfg(target_endian = "little")]
#[test]
fn port_pressure_verdict() {
    let range = PortRange::parse("40000 40009").unwrap();
    let dest: SocketAddr = "10.0.0.1:443".parse().unwrap();
    let mut text = TCP.lines().next().unwrap().to_owned() + "\n";
    // 9 of the 10 ephemeral ports toward 10.0.0.1:443 from 127.0.0.1, 4 in TIME_WAIT.
    for i in 0..9u16 {
        let state = if i < 4 { 0x06 } else { 0x01 };
        text += &line(usize::from(i), 1, 40000 + i, state);
    }
    // A bound port outside the range, and another source address.
    text += &line(9, 1, 5000, 0x01);
    text += &line(10, 2, 40000, 0x02);
    text += &line(11, 2, 40001, 0x01);
    let c = census(&[(TCP_PATH, &text)]);
    assert_eq!(c.parse_errors(), 0, "{:?}", c.first_parse_error());

    let p = port_pressure(&range, &c, dest);
    assert_eq!(p.destination, dest);
    assert_eq!(p.source, Some(LOOPBACK));
    assert_eq!((p.used, p.time_wait, p.available), (9, 4, 10));
    assert!((p.share - 0.9).abs() < 1e-9);
    assert!(p.near_exhaustion);
    assert!(p.share > NEAR_EXHAUSTION_SHARE);

    // Reserving ports shrinks what is available, and reserved ports are not counted.
    let mut reserved = range.clone();
    reserved.reserved = PortRange::parse_reserved("40008-40009").unwrap();
    let p = port_pressure(&reserved, &c, dest);
    assert_eq!((p.used, p.available), (8, 8));
    assert!(p.near_exhaustion);

    // A wide range: no pressure.
    let wide = PortRange::parse("32768 60999").unwrap();
    let p = port_pressure(&wide, &c, dest);
    assert_eq!((p.used, p.available), (9, 28232));
    assert!(!p.near_exhaustion);

    // Unknown destination.
    let p = port_pressure(&range, &c, "10.0.0.2:443".parse().unwrap());
    assert_eq!(
        (p.source, p.used, p.share, p.near_exhaustion),
        (None, 0, 0.0, false)
    );

    let worst = worst_port_pressure(&range, &c).unwrap();
    assert_eq!((worst.destination, worst.used), (dest, 9));
    assert!(worst_port_pressure(&range, &SocketCensus::new()).is_none());

    let v = serde_json::to_value(port_pressure(&range, &c, dest)).unwrap();
    assert_eq!(v["destination"], "10.0.0.1:443");
    assert_eq!(v["source"], "127.0.0.1");
    assert_eq!(v["used"], 9);
    assert_eq!(v["near_exhaustion"], true);
}

// ---- live: this kernel's files, loopback traffic only ----

#[test]
fn live_files_parse() {
    let s = Snapshot::read().unwrap();
    assert!(s.get("TcpExt.ListenOverflows").is_some());
    assert!(s.get("Tcp.RetransSegs").is_some());
    assert_eq!(s.signed.get("Tcp.MaxConn"), Some(&-1));
    let d = delta(&s, &Snapshot::read().unwrap());
    assert_eq!(d.went_backwards().count(), 0, "{d:?}");

    let r = PortRange::read().unwrap();
    assert!(r.low <= r.high && r.available() > 0, "{r:?}");

    let c = SocketCensus::read().unwrap();
    assert_eq!(c.parse_errors(), 0, "{:?}", c.first_parse_error());
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const N: usize = 20;

#[test]
fn live_census_sees_established_sockets() {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conns = Vec::new();
    for _ in 0..N {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        conns.push((client, server));
    }
    let c = SocketCensus::read().unwrap();
    let d = c.destination(addr).unwrap();
    assert!(d.states.get(TcpState::Established) >= N as u64, "{d:?}");
    assert!(c.states().get(TcpState::Listen) >= 1);
    assert!(
        c.top_by_sockets(usize::MAX)
            .iter()
            .any(|t| t.destination == addr)
    );

    let range = PortRange::read().unwrap();
    let p = port_pressure(&range, &c, addr);
    assert_eq!(p.source, Some(LOOPBACK));
    let in_range = conns
        .iter()
        .filter(|(cl, _)| range.contains(cl.local_addr().unwrap().port()))
        .count();
    assert!(p.used >= in_range as u64, "{p:?}");
    assert!(!p.near_exhaustion || range.available() < 100, "{p:?}");
    drop(conns);
}

#[test]
fn live_census_sees_time_wait_on_the_side_that_closed_first() {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conns = Vec::new();
    for _ in 0..N {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        conns.push((client, server));
    }
    // The client closes first (FIN_WAIT1/2); the server reads the FIN, then closes: the
    // client's socket moves to TIME_WAIT, toward the listener's address.
    for (client, mut server) in conns {
        drop(client);
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        drop(server);
    }
    let d = poll("TIME_WAIT sockets", || {
        let c = SocketCensus::read().unwrap();
        c.destination(addr)
            .filter(|d| d.time_wait >= N as u64)
            .map(|d| (d, c))
    });
    let (d, c) = d;
    assert!(d.states.get(TcpState::TimeWait) >= N as u64);
    assert!(
        c.top_by_time_wait(usize::MAX)
            .iter()
            .any(|t| t.destination == addr)
    );
    let p = port_pressure(&PortRange::read().unwrap(), &c, addr);
    assert!(p.time_wait <= p.used, "{p:?}");
}

#[test]
fn live_listen_overflows_counted() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};

    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    listener
        .bind(&SockAddr::from(SocketAddr::new(LOOPBACK, 0)))
        .unwrap();
    // Backlog 1 and never accept: the accept queue holds 2, later SYNs overflow.
    listener.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();

    let before = Snapshot::read().unwrap();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => panic!("connect: {e}"),
        }
        clients.push(s);
    }
    let d = poll("TcpExt.ListenOverflows to grow", || {
        let d = delta(&before, &Snapshot::read().unwrap());
        d.get("TcpExt.ListenOverflows")
            .is_some_and(|c| c.nonzero)
            .then_some(d)
    });
    let lo = d.get("TcpExt.ListenOverflows").unwrap();
    assert!(lo.delta.unwrap() > 0, "{lo:?}");
    assert!(d.get("TcpExt.ListenDrops").unwrap().nonzero);
    drop(clients);
    drop(listener);
}
