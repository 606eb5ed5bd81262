//! Tests of the flags: parsing with clap, then validation, for `attack` and `packets`.
use std::{net::IpAddr, time::Duration};

use clap::Parser;

use super::{
    Cli, Command, PacketsCommand,
    config::{parse_resolve, to_config},
    packet_config::parse_match,
};
use crate::{
    engine::{ProtoChoice, RunConfig},
    packets::{
        inject::{Direction, Kind},
        syn::SynConfig,
    },
};

fn args(extra: &[&str]) -> Result<RunConfig, String> {
    let mut argv = vec!["loadgen", "attack"];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Attack(a) = cli.command else {
        unreachable!()
    };
    to_config(&a).map_err(|e| e.to_string())
}

#[test]
fn resolve_flag_parses_v4_and_v6() {
    let r = parse_resolve("api.example:443:127.0.0.1").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("api.example", 443));
    let r = parse_resolve("h:8443:[::1]").unwrap();
    assert_eq!(r.addr, "::1".parse::<IpAddr>().unwrap());
    let e = parse_resolve("nohost").unwrap_err().to_string();
    assert!(e.contains("HOST:PORT:ADDR"), "{e}");
    assert!(parse_resolve("h:x:127.0.0.1").is_err());
    assert!(parse_resolve("h:1:notanip").is_err());
}

#[test]
fn bad_flags_say_what_to_do() {
    let e = args(&["http://127.0.0.1:1/"]).unwrap_err();
    assert!(e.contains("say how much load"), "{e}");
    let e = args(&["http://127.0.0.1:1/", "--rate", "10"]).unwrap_err();
    assert!(e.contains("--rate needs --duration"), "{e}");
    let e = args(&["ftp://x/", "--rate", "10", "--duration", "1s"]).unwrap_err();
    assert!(e.contains("absolute http"), "{e}");
    let e = args(&[
        "http://x/",
        "--rate",
        "10",
        "--duration",
        "1s",
        "-H",
        "nocolon",
    ])
    .unwrap_err();
    assert!(e.contains("Name: value"), "{e}");
    let e = args(&["--rate", "10", "--duration", "1s"]).unwrap_err();
    assert!(e.contains("give a URL"), "{e}");
    let e = args(&["http://x/", "--rate", "abc", "--duration", "1s"]).unwrap_err();
    assert!(e.contains("abc"), "{e}");
    let e = args(&["http://x/", "--rate", "1", "--users", "3"]).unwrap_err();
    assert!(e.contains("cannot be used with"), "{e}");
}

#[test]
fn connections_default_by_protocol_and_model() {
    let c = args(&["http://x/", "--rate", "10", "--duration", "1s"]).unwrap();
    assert_eq!(c.connections, 64);
    let c = args(&["http://x/", "--rate", "10", "--duration", "1s", "--h2c"]).unwrap();
    assert_eq!((c.connections, c.proto), (1, ProtoChoice::H2c));
    let c = args(&["http://x/", "--users", "7"]).unwrap();
    assert_eq!(c.connections, 7);
}

#[test]
fn headers_apply_to_every_target() {
    let c = args(&[
        "http://x/",
        "--rate",
        "1",
        "--duration",
        "1s",
        "-H",
        "X-A: 1",
        "-H",
        "X-A: 2",
    ])
    .unwrap();
    let v: Vec<_> = c.targets[0].headers.get_all("x-a").iter().collect();
    assert_eq!(v, ["1", "2"]);
}

fn packets(argv: &[&str]) -> Result<PacketsCommand, String> {
    let mut v = vec!["loadgen", "packets"];
    v.extend_from_slice(argv);
    match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
        Command::Packets(p) => Ok(p.command),
        _ => unreachable!(),
    }
}

fn syn(argv: &[&str]) -> Result<SynConfig, String> {
    let mut v = vec!["syn"];
    v.extend_from_slice(argv);
    match packets(&v)? {
        PacketsCommand::Syn(a) => a.to_config().map_err(|e| e.to_string()),
        _ => unreachable!(),
    }
}

#[test]
fn syn_flags() {
    let c = syn(&["--target", "127.0.0.1:80", "--rate", "100", "--count", "50"]).unwrap();
    assert_eq!(c.duration, Duration::from_millis(500));
    assert_eq!(
        (c.source_ports.clone(), c.alive_port),
        (61000..=61999, Some(9))
    );
    let c = syn(&[
        "--target",
        "[::1]:80",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--no-alive-check",
    ])
    .unwrap();
    assert_eq!(c.alive_port, None);
    let e = syn(&["--target", "127.0.0.1:80", "--rate", "10"]).unwrap_err();
    assert!(e.contains("--count"), "{e}");
    let e = syn(&["--target", "127.0.0.1:80", "--rate", "0", "--count", "1"]).unwrap_err();
    assert!(e.contains("above 0"), "{e}");
    let e = syn(&[
        "--target",
        "127.0.0.1:80",
        "--rate",
        "1",
        "--count",
        "1",
        "--source-ports",
        "9-3",
    ])
    .unwrap_err();
    assert!(e.contains("LO-HI"), "{e}");
    assert!(syn(&["--target", "nohost", "--rate", "1", "--count", "1"]).is_err());
    assert!(syn(&["--target", "127.0.0.1:0", "--rate", "1", "--count", "1"]).is_err());
}

#[test]
fn inject_flags() {
    let p = packets(&["inject", "--rst", "--match", "127.0.0.1:5-127.0.0.1:80"]).unwrap();
    let PacketsCommand::Inject(a) = p else {
        unreachable!()
    };
    let c = a.to_config(&[]).unwrap();
    assert_eq!(
        (c.kind, c.direction, c.ttl),
        (Kind::Rst, Direction::ToClient, 128)
    );
    assert!(packets(&["inject", "--match", "127.0.0.1:5-127.0.0.1:80"]).is_err());
    assert!(
        packets(&[
            "inject",
            "--rst",
            "--fin",
            "--match",
            "127.0.0.1:5-127.0.0.1:80"
        ])
        .is_err()
    );
    assert!(
        packets(&[
            "inject",
            "--rst",
            "--ttl",
            "0",
            "--match",
            "127.0.0.1:5-127.0.0.1:80"
        ])
        .is_err()
    );
    let (a, b) = parse_match("[::1]:5000-[::1]:80").unwrap();
    assert_eq!((a.port(), b.port()), (5000, 80));
    assert!(parse_match("127.0.0.1:5-[::1]:80").is_err());
    assert!(parse_match("127.0.0.1:5").is_err());
}
