//! Unit tests for rates, stages, the schedule, think times and user groups.

use super::*;
use std::path::Path;

const RATE_EXPECTED: &str = "expected requests per second (`1250`) or per period \
                             (`100/1s`, `6000/1m`, `5/100ms`)";

fn rate(s: &str) -> f64 {
    match s.parse::<Rate>() {
        Ok(rate) => rate.per_sec(),
        Err(err) => panic!("rate {s:?} should parse: {err}"),
    }
}

fn rate_err(s: &str) -> String {
    match s.parse::<Rate>() {
        Ok(rate) => panic!("rate {s:?} should be refused, got {rate:?}"),
        Err(err) => err.to_string(),
    }
}

fn stages_err(s: &str) -> String {
    match parse_stages(s) {
        Ok(stages) => panic!("stages {s:?} should be refused, got {stages:?}"),
        Err(err) => err.to_string(),
    }
}

fn drain(schedule: Schedule) -> Vec<Duration> {
    let offsets: Vec<Duration> = schedule.take(10_000_001).collect();
    assert!(offsets.len() <= 10_000_000, "schedule does not end");
    offsets
}

fn assert_monotonic(offsets: &[Duration]) {
    for pair in offsets.windows(2) {
        assert!(pair[0] <= pair[1], "offsets go backwards: {pair:?}");
    }
}

/// Requests per whole second of the run.
fn per_second(offsets: &[Duration]) -> Vec<usize> {
    let seconds = offsets.last().map_or(0, |last| last.as_secs() as usize + 1);
    let mut counts = vec![0; seconds];
    for offset in offsets {
        counts[offset.as_secs() as usize] += 1;
    }
    counts
}

fn stage(duration_secs: u64, target_per_sec: f64) -> Stage {
    Stage {
        duration: Duration::from_secs(duration_secs),
        target_per_sec,
    }
}

#[test]
fn rates_parse_in_every_form() {
    let cases = [
        ("1250", 1250.0),
        ("100/1s", 100.0),
        ("6000/1m", 100.0),
        ("5/100ms", 50.0),
        ("0", 0.0),
        ("0/1s", 0.0),
        ("50/s", 50.0),
        ("2.5", 2.5),
        (" 10 / 2s ", 5.0),
        ("3600/1h", 1.0),
    ];
    for (input, per_sec) in cases {
        assert_eq!(rate(input), per_sec, "rate {input:?}");
    }
    assert_eq!(
        "6000/1m".parse::<Rate>().map(|r| r.to_string()).ok(),
        Some("100/s".into())
    );
}

#[test]
fn malformed_rates_say_what_was_expected() {
    let huge = format!("1{}", "0".repeat(400));
    let cases = [
        ("abc", format!("invalid rate `abc`, {RATE_EXPECTED}")),
        ("", format!("invalid rate ``, {RATE_EXPECTED}")),
        ("1e3", format!("invalid rate `1e3`, {RATE_EXPECTED}")),
        ("inf", format!("invalid rate `inf`, {RATE_EXPECTED}")),
        ("NaN", format!("invalid rate `NaN`, {RATE_EXPECTED}")),
        ("/1s", format!("invalid rate `/1s`, {RATE_EXPECTED}")),
        ("-5", "negative rate `-5`, expected 0 or more requests".into()),
        ("-5/1s", "negative rate `-5/1s`, expected 0 or more requests".into()),
        ("10/", "missing period after `/` in `10/`, expected e.g. `10/1s`".into()),
        (
            "10/xs",
            "invalid period `xs` in `10/xs` (unknown time unit \"xs\", supported units: ns, us/\u{b5}s, ms, sec, min, hours, days, weeks, months, years (and few variations)), expected a duration such as `1s`, `1m` or `100ms`".into(),
        ),
        ("10/0s", "zero period in `10/0s`, expected a period longer than 0".into()),
        (
            &huge,
            format!("rate `{huge}` is too large, expected a finite number of requests per second"),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(rate_err(input), expected, "rate {input:?}");
    }
}

#[test]
fn stages_parse_k6_syntax() {
    let stages = parse_stages("30s:100, 2m:1250 ,30s:0,0s:6000/1m").expect("valid stages");
    assert_eq!(
        stages,
        [
            stage(30, 100.0),
            stage(120, 1250.0),
            stage(30, 0.0),
            stage(0, 100.0)
        ]
    );
}

#[test]
fn malformed_stages_name_the_stage() {
    let cases = [
        ("", "no stages, expected `DURATION:RATE[,DURATION:RATE...]` such as `30s:100,2m:1250`".to_owned()),
        (",", "stage 1 is empty, expected `DURATION:RATE` such as `30s:100`".into()),
        ("30s:100,", "stage 2 is empty, expected `DURATION:RATE` such as `30s:100`".into()),
        ("100", "stage 1 `100` has no `:`, expected `DURATION:RATE` such as `30s:100`".into()),
        (":100", "stage 1 `:100` has no duration, expected `DURATION:RATE` such as `30s:100`".into()),
        ("1s:", "stage 1 `1s:` has no rate, expected `DURATION:RATE` such as `30s:100`".into()),
        ("1s:10,1s:abc", format!("stage 2 `1s:abc`: invalid rate `abc`, {RATE_EXPECTED}")),
        ("1s:-5", "stage 1 `1s:-5`: negative rate `-5`, expected 0 or more requests".into()),
        ("soon:10", "stage 1 `soon:10` has an invalid duration (expected number at 0), expected a duration such as `30s` or `2m`".into()),
    ];
    for (input, expected) in cases {
        assert_eq!(stages_err(input), expected, "stages {input:?}");
    }
}

#[test]
fn constant_rate_is_exact_without_drift() {
    let rate: Rate = "1250".parse().expect("rate");
    let schedule = Schedule::constant(rate, Some(Duration::from_secs(10)));
    assert_eq!(schedule.expected_requests(), Some(12_500));
    assert_eq!(schedule.total_duration(), Some(Duration::from_secs(10)));
    let offsets = drain(schedule);
    assert_eq!(offsets.len(), 12_500, "1250/s for 10 s");
    for (n, offset) in offsets.iter().enumerate() {
        assert_eq!(
            *offset,
            Duration::from_micros(800 * n as u64),
            "request {n}"
        );
    }
    assert_eq!(
        per_second(&offsets),
        vec![1250; 10],
        "every second gets exactly the rate"
    );
}

#[test]
fn awkward_rate_stays_within_a_nanosecond_over_a_long_run() {
    let rate: Rate = "7/1s".parse().expect("rate");
    let mut schedule = Schedule::constant(rate, None);
    assert_eq!(schedule.expected_requests(), None, "unbounded");
    assert_eq!(schedule.total_duration(), None);
    for n in 0..2_000_000_u128 {
        let offset = schedule
            .next()
            .expect("unbounded schedule never ends")
            .as_nanos();
        let exact_ns = (n * 1_000_000_000 + 3) / 7; // n / 7 s, rounded to nearest ns
        assert!(
            offset.abs_diff(exact_ns) <= 1,
            "request {n}: {offset} ns vs {exact_ns} ns"
        );
    }
}

#[test]
fn partial_requests_are_not_sent() {
    // 1/3 per second for 10 s is 3.33 requests: three, at 0, 3 and 6 s.
    let rate: Rate = "1/3s".parse().expect("rate");
    let offsets = drain(Schedule::constant(rate, Some(Duration::from_secs(10))));
    assert_eq!(offsets, [0, 3, 6].map(Duration::from_secs));
    // A fractional rate whose area is whole despite float rounding: 0.1/s for 30 s.
    let rate: Rate = "0.1".parse().expect("rate");
    let schedule = Schedule::constant(rate, Some(Duration::from_secs(30)));
    assert_eq!(schedule.expected_requests(), Some(3));
    assert_eq!(drain(schedule).len(), 3);
}

#[test]
fn zero_rate_sends_nothing() {
    let zero: Rate = "0".parse().expect("rate");
    for duration in [None, Some(Duration::from_secs(5))] {
        let mut schedule = Schedule::constant(zero, duration);
        assert_eq!(
            schedule.expected_requests(),
            Some(0),
            "duration {duration:?}"
        );
        assert_eq!(schedule.next(), None, "a pause emits nothing");
    }
}

#[test]
fn linear_ramp_from_zero_follows_the_area() {
    // 0 -> 100/s over 10 s: rate 10 t, area 5 t^2, so request n is at sqrt(n / 5) s and
    // second k gets 5 (2k + 1) requests.
    let schedule = Schedule::stages(0.0, vec![stage(10, 100.0)]);
    assert_eq!(schedule.expected_requests(), Some(500));
    let offsets = drain(schedule);
    assert_eq!(offsets.len(), 500);
    assert_monotonic(&offsets);
    for (n, offset) in offsets.iter().enumerate() {
        let exact_secs = (n as f64 / 5.0).sqrt();
        let error_ns = (offset.as_secs_f64() - exact_secs).abs() * 1e9;
        assert!(error_ns <= 1.0, "request {n}: {offset:?} vs {exact_secs} s");
    }
    let expected: Vec<usize> = (0..10).map(|k| 5 * (2 * k + 1)).collect();
    assert_eq!(per_second(&offsets), expected);
}

#[test]
fn ramp_down_and_floor_of_the_area() {
    let down = drain(Schedule::stages(100.0, vec![stage(10, 0.0)]));
    assert_eq!(down.len(), 500, "100 -> 0 over 10 s is 500 requests");
    assert_monotonic(&down);
    let expected: Vec<usize> = (0..10).map(|k| 5 * (19 - 2 * k)).collect();
    assert_eq!(per_second(&down), expected, "second k gets 95, 85, ...");
    // 0 -> 101/s over 1 s is 50.5 requests: 50 are sent.
    let schedule = Schedule::stages(0.0, vec![stage(1, 101.0)]);
    assert_eq!(schedule.expected_requests(), Some(50));
    assert_eq!(drain(schedule).len(), 50);
}

#[test]
fn k6_stages_emit_the_area_under_the_curve() {
    let stages = parse_stages("30s:100,2m:1250,30s:0").expect("stages");
    let schedule = Schedule::stages(0.0, stages);
    // 30 * 50 + 120 * (100 + 1250) / 2 + 30 * 1250 / 2
    assert_eq!(schedule.expected_requests(), Some(101_250));
    assert_eq!(schedule.total_duration(), Some(Duration::from_secs(180)));
    let offsets = drain(schedule);
    assert_eq!(offsets.len(), 101_250);
    assert_monotonic(&offsets);
    assert!(
        offsets
            .last()
            .is_some_and(|t| *t < Duration::from_secs(180))
    );
    // Each second gets the integral of the rate over that second, within one request.
    let rate_at = |t: f64| match t {
        t if t < 30.0 => t * 100.0 / 30.0,
        t if t < 150.0 => 100.0 + (t - 30.0) * 1150.0 / 120.0,
        t => 1250.0 - (t - 150.0) * 1250.0 / 30.0,
    };
    for (second, count) in per_second(&offsets).into_iter().enumerate() {
        let t = second as f64;
        let area = (rate_at(t) + rate_at(t + 1.0)) / 2.0;
        assert!(
            (count as f64 - area).abs() <= 1.0,
            "second {second}: {count} vs {area}"
        );
    }
}

#[test]
fn zero_rate_stages_pause_the_schedule() {
    // 50/s for 2 s, a 3 s pause (a step down, a flat 0 stage, a step up), 50/s for 2 s.
    let stages = vec![
        stage(2, 50.0),
        stage(0, 0.0),
        stage(3, 0.0),
        stage(0, 50.0),
        stage(2, 50.0),
    ];
    let schedule = Schedule::stages(50.0, stages);
    assert_eq!(schedule.expected_requests(), Some(200));
    assert_eq!(schedule.total_duration(), Some(Duration::from_secs(7)));
    let offsets = drain(schedule);
    assert_eq!(offsets.len(), 200);
    assert_eq!(offsets[99], Duration::from_millis(1980));
    assert_eq!(
        offsets[100],
        Duration::from_secs(5),
        "first request after the pause"
    );
    assert!(
        offsets
            .iter()
            .all(|t| *t < Duration::from_secs(2) || *t >= Duration::from_secs(5)),
        "nothing is sent during the pause"
    );
    // A leading pause, then a ramp: the first request is at the end of the pause.
    let offsets = drain(Schedule::stages(0.0, vec![stage(5, 0.0), stage(10, 100.0)]));
    assert_eq!(offsets.len(), 500);
    assert_eq!(offsets[0], Duration::from_secs(5));
    assert_monotonic(&offsets);
}

#[test]
fn degenerate_schedules_end_at_once() {
    let mut empty = Schedule::stages(100.0, Vec::new());
    assert_eq!(empty.total_duration(), Some(Duration::ZERO));
    assert_eq!(empty.expected_requests(), Some(0));
    assert_eq!(empty.next(), None);
    let nonsense = Schedule::stages(f64::NAN, vec![stage(1, -5.0), stage(1, f64::INFINITY)]);
    assert_eq!(
        nonsense.expected_requests(),
        Some(0),
        "bad rates count as 0"
    );
    assert_eq!(drain(nonsense), Vec::<Duration>::new());
}

#[test]
fn think_times_parse_fixed_and_ranges() {
    let cases = [
        ("2s", 2_000, 2_000),
        ("0", 0, 0),
        ("0s", 0, 0),
        ("4s..10s", 4_000, 10_000),
        (" 1.5s .. 2s ", 1_500, 2_000),
        ("500ms..1m", 500, 60_000),
    ];
    for (input, min_ms, max_ms) in cases {
        let think: ThinkTime = input
            .parse()
            .unwrap_or_else(|err| panic!("{input:?}: {err}"));
        assert_eq!(think.min, Duration::from_millis(min_ms), "{input:?}");
        assert_eq!(think.max, Duration::from_millis(max_ms), "{input:?}");
    }
    let shown: ThinkTime = "4s..10s".parse().expect("think time");
    assert_eq!(shown.to_string(), "4s..10s");
}

#[test]
fn malformed_think_times_say_what_was_expected() {
    let tail = "expected `2s` or a range such as `4s..10s`";
    let cases = [
        ("abc", format!("invalid think time `abc` (expected number at 0), {tail}")),
        ("4s..", format!("invalid think time `4s..` (missing maximum), {tail}")),
        ("..4s", format!("invalid think time `..4s` (missing minimum), {tail}")),
        ("5", format!("invalid think time `5` (time unit needed, for example 5sec or 5ms), {tail}")),
        (
            "10s..4s",
            "think time `10s..4s` has its minimum above its maximum, expected `MIN..MAX` with MIN <= MAX".into(),
        ),
    ];
    for (input, expected) in cases {
        let err = input.parse::<ThinkTime>().expect_err("should be refused");
        assert_eq!(err.to_string(), expected, "think time {input:?}");
    }
}

#[test]
fn think_time_samples_are_uniform_and_in_range() {
    let think: ThinkTime = "4s..10s".parse().expect("think time");
    assert_eq!(think.sample(0), Duration::from_secs(4));
    assert_eq!(think.sample(u64::MAX), Duration::from_secs(10));
    assert_eq!(think.sample(1 << 63), Duration::from_secs(7));
    let fixed: ThinkTime = "2s".parse().expect("think time");
    assert_eq!(fixed.sample(12345), Duration::from_secs(2));
    // splitmix64 sequence into 6 one-second buckets.
    let mut state = 42_u64;
    let mut buckets = [0_u32; 6];
    for _ in 0..60_000 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let sample = think.sample(z ^ (z >> 31));
        assert!(
            sample >= think.min && sample <= think.max,
            "{sample:?} out of range"
        );
        buckets[((sample - think.min).as_secs() as usize).min(5)] += 1;
    }
    for (second, count) in buckets.iter().enumerate() {
        assert!(
            (9_500..=10_500).contains(count),
            "bucket {second}: {count} of 60000"
        );
    }
}

#[test]
fn user_groups_parse_and_print_back() {
    let active: UserGroup = "active:users=250:think=0s".parse().expect("active group");
    assert_eq!(active.name, "active");
    assert_eq!(active.users, 250);
    assert_eq!(active.think.max, Duration::ZERO);
    assert_eq!((active.url.as_ref(), active.ramp_up), (None, None));
    let passive: UserGroup = "passive:users=1000:think=2s:url=https://host/poll:ramp=30s"
        .parse()
        .expect("passive group");
    assert_eq!(passive.users, 1000);
    assert_eq!(passive.think.min, Duration::from_secs(2));
    assert_eq!(
        passive.url.as_ref().map(|u| u.to_string()),
        Some("https://host/poll".into())
    );
    assert_eq!(passive.ramp_up, Some(Duration::from_secs(30)));
    let ported: UserGroup = "api-2:url=http://h:8443/p?a=b:users=3:think=1s..2s"
        .parse()
        .expect("URL with a port and a query");
    assert_eq!(ported.url.as_ref().and_then(|u| u.port_u16()), Some(8443));
    assert_eq!(ported.url.as_ref().and_then(|u| u.query()), Some("a=b"));
    assert_eq!(ported.think.max, Duration::from_secs(2));
    for group in [active, passive, ported] {
        let again: UserGroup = group.to_string().parse().expect("Display is parseable");
        assert_eq!(again, group);
    }
    let bare: UserGroup = "g:users=1".parse().expect("think defaults to 0s");
    assert_eq!(bare.think.min, Duration::ZERO);
}

#[test]
fn malformed_user_groups_name_the_bad_part() {
    let keys = "expected users=N, think=DURATION, url=URL or ramp=DURATION";
    let cases = [
        ("", "invalid group name ``, expected letters, digits, `-`, `_` or `.` before the first `:`".to_owned()),
        ("my group:users=1", "invalid group name `my group`, expected letters, digits, `-`, `_` or `.` before the first `:`".into()),
        ("g", "group `g` has no `users=N`, expected e.g. `g:users=250:think=0s`".into()),
        ("g:think=2s", "group `g` has no `users=N`, expected e.g. `g:users=250:think=0s`".into()),
        ("g:users=abc", "invalid `users=abc` in group `g` (invalid digit found in string), expected a whole number of users from 1 to 4294967295".into()),
        ("g:users=-1", "invalid `users=-1` in group `g` (invalid digit found in string), expected a whole number of users from 1 to 4294967295".into()),
        ("g:users=0", "invalid `users=0` in group `g` (no users), expected at least 1 user".into()),
        ("g:users=1:users=2", "`users` given twice in group `g`, expected each key at most once".into()),
        ("g:users=1:color=red", "unknown key `color` in group `g`, expected users, think, url or ramp".into()),
        ("g:users=1:oops", format!("part `oops` of group `g` is not `key=value`, {keys}")),
        ("g::users=1", format!("part `` of group `g` is not `key=value`, {keys}")),
        ("g:users=1:think=5s..1s", "invalid `think=5s..1s` in group `g` (think time `5s..1s` has its minimum above its maximum, expected `MIN..MAX` with MIN <= MAX), expected a think time such as `2s` or `4s..10s`".into()),
        ("g:users=1:ramp=soon", "invalid `ramp=soon` in group `g` (expected number at 0), expected a duration such as `30s`".into()),
        ("g:users=1:url=/poll", "invalid `url=` in group `g`: relative URL `/poll`, expected an absolute http:// or https:// URL".into()),
        ("g:users=1:url=ftp://h/x", "invalid `url=` in group `g`: unsupported scheme `ftp` in `ftp://h/x`, expected http or https".into()),
    ];
    for (input, expected) in cases {
        let err = input.parse::<UserGroup>().expect_err("should be refused");
        assert_eq!(err.to_string(), expected, "group {input:?}");
    }
}

#[test]
fn scenario_files_list_groups_with_comments() {
    let text = "# closed model: 250 senders, 1000 pollers\n\n\
                active:users=250:think=0s\n   \n\
                  passive:users=1000:think=2s:url=https://host/poll  \n";
    let groups = parse_scenario(text, Path::new("s.txt")).expect("valid scenario");
    let names: Vec<_> = groups.iter().map(|g| (g.name.as_str(), g.users)).collect();
    assert_eq!(names, [("active", 250), ("passive", 1000)]);
}

#[test]
fn scenario_errors_name_file_and_line() {
    let origin = Path::new("s.txt");
    let cases = [
        (
            "a:users=1\n# c\nb:users=x",
            "s.txt:3: invalid `users=x` in group `b` (invalid digit found in string), expected a whole number of users from 1 to 4294967295",
        ),
        (
            "a:users=1\n\na:users=2",
            "s.txt:3: group `a` already defined on line 1, expected unique names",
        ),
        (
            "# nothing\n\n",
            "s.txt: no user groups, expected one group per line such as `active:users=250:think=0s`",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_scenario(text, origin).expect_err("should be refused");
        assert_eq!(err.to_string(), expected, "scenario {text:?}");
    }
    let missing = std::env::temp_dir().join("loadgen-rate-no-such-scenario.txt");
    let err = load_scenario(&missing).expect_err("missing file");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read the scenario file: {}",
            missing.display(),
            std::io::Error::from_raw_os_error(2)
        )
    );
}
