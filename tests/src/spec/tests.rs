//! Unit tests of the spec grammar, good and bad input.

use super::*;

fn parse(spec: &str) -> ListenerSpec {
    spec.parse()
        .unwrap_or_else(|e| panic!("{spec} should parse: {e}"))
}

#[test]
fn parses_every_fault() {
    assert_eq!(parse("ok").fault, Fault::Ok { body_bytes: 2 });
    assert_eq!(parse("ok:size=4096").fault, Fault::Ok { body_bytes: 4096 });
    assert_eq!(
        parse("status:503").fault,
        Fault::Status(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(parse("wrong-cert").fault, Fault::WrongCert);
    assert_eq!(parse("untrusted-cert").fault, Fault::UntrustedCert);
    assert_eq!(parse("expired-cert").fault, Fault::ExpiredCert);
    assert_eq!(
        parse("goaway:ENHANCE_YOUR_CALM:after=2").fault,
        Fault::GoAway {
            reason: Reason::ENHANCE_YOUR_CALM,
            after: 2
        }
    );
    assert_eq!(
        parse("goaway:0").fault,
        Fault::GoAway {
            reason: Reason::NO_ERROR,
            after: 0
        }
    );
    assert_eq!(
        parse("goaway-on-concurrency:2").fault,
        Fault::GoAwayOnConcurrency {
            max_streams: 2,
            hold: Duration::from_millis(50)
        }
    );
    assert_eq!(
        parse("goaway-on-concurrency:4:hold=1s").fault,
        Fault::GoAwayOnConcurrency {
            max_streams: 4,
            hold: Duration::from_secs(1)
        }
    );
    assert_eq!(
        parse("rst-stream:refused_stream:after=1").fault,
        Fault::RstStream {
            reason: Reason::REFUSED_STREAM,
            after: 1
        }
    );
    assert_eq!(parse("rst").fault, Fault::Rst { after: 0 });
    assert_eq!(parse("rst:after=3").fault, Fault::Rst { after: 3 });
    assert_eq!(parse("rst-mid-response").fault, Fault::RstMidResponse);
    assert_eq!(parse("fin-mid-response").fault, Fault::FinMidResponse);
    assert_eq!(
        parse("close-idle:200ms").fault,
        Fault::CloseIdle(Duration::from_millis(200))
    );
    assert_eq!(parse("stall").fault, Fault::Stall);
    assert_eq!(parse("slow:1m").fault, Fault::Slow(Duration::from_secs(60)));
    assert_eq!(parse("backlog-full").fault, Fault::BacklogFull);
    assert_eq!(parse("refused").fault, Fault::Refused);
}

#[test]
fn parses_port_suffix() {
    let spec = parse("slow:2s@8443");
    assert_eq!(spec.port, Some(8443));
    assert_eq!(spec.fault, Fault::Slow(Duration::from_secs(2)));
    assert_eq!(spec.to_string(), "slow:2s@8443");
}

#[test]
fn display_round_trips() {
    for spec in default_specs() {
        let again: ListenerSpec = spec.to_string().parse().unwrap();
        assert_eq!(again, spec, "{spec}");
    }
    assert_eq!(parse("goaway:99").to_string(), "goaway:99:after=0");
    assert_eq!(parse("slow:1500ms").to_string(), "slow:1500ms");
}

#[test]
fn rejects_bad_specs_naming_them() {
    let cases = [
        ("", "a fault"),
        ("teapot", "a fault"),
        ("ok:size=big", "size="),
        ("ok:bytes=3", "an option of `ok`"),
        ("status", "status:<code>"),
        ("status:42", "200-599"),
        ("status:abc", "200-599"),
        ("wrong-cert:1", "without arguments"),
        ("goaway", "error code"),
        ("goaway:calm_down", "got `calm_down`"),
        ("goaway:cancel:after=x", "request count"),
        ("goaway:cancel:after=1:after=2", "at most once"),
        ("goaway:cancel:later", "key=value"),
        ("goaway-on-concurrency", "goaway-on-concurrency:<N>"),
        ("goaway-on-concurrency:two", "stream count"),
        ("goaway-on-concurrency:2:hold=5", "duration"),
        ("rst:after=-1", "request count"),
        ("close-idle", "close-idle:<duration>"),
        ("close-idle:0ms", "above zero"),
        ("slow:2h", "duration"),
        ("slow:s", "duration"),
        ("slow:99999999999999999999ms", "duration"),
        ("ok@0", "port"),
        ("ok@70000", "port"),
        ("ok@", "port"),
    ];
    for (spec, expected) in cases {
        let err = spec.parse::<ListenerSpec>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("{spec:?}")), "{text}");
        assert!(text.contains(expected), "{spec}: {text}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert!(parse_duration("1").is_err());
    assert!(parse_duration("ms").is_err());
    assert!(parse_duration("1.5s").is_err());
}
