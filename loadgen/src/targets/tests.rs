//! Unit tests for the targets parsers: every kind of mistake, valid files, and no panics.

use super::*;

fn http(text: &str) -> Result<Vec<Target>, TargetsError> {
    parse_bytes(text.as_bytes(), TargetFormat::Http, Path::new("t.txt"))
}

fn json(text: &str) -> Result<Vec<Target>, TargetsError> {
    parse_bytes(text.as_bytes(), TargetFormat::Json, Path::new("t.json"))
}

fn http_err(text: &str) -> String {
    match http(text) {
        Ok(targets) => panic!("expected an error for {text:?}, got {targets:?}"),
        Err(err) => err.to_string(),
    }
}

fn json_err(text: &str) -> String {
    match json(text) {
        Ok(targets) => panic!("expected an error for {text:?}, got {targets:?}"),
        Err(err) => err.to_string(),
    }
}

/// A fresh directory under the system temp dir, unique per test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-targets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn http_multi_target_with_headers_comments_and_back_to_back() {
    let text = "# smoke test\r\n\
                GET https://api.example.com/v1/items?x=1\r\n\
                Accept: application/json\r\n\
                X-Trace:  a  \r\n\
                # a comment inside a target\r\n\
                X-Trace: b\r\n\
                \r\n\
                \r\n\
                \tHEAD http://example.com\n\
                DELETE http://example.com:8080/items/7\n\
                Host: other.example\n";
    let targets = http(text).expect("valid file parses");
    assert_eq!(targets.len(), 3, "three targets: {targets:?}");
    let first = &targets[0];
    assert_eq!(first.method, Method::GET);
    assert_eq!(first.url, "https://api.example.com/v1/items?x=1");
    assert_eq!(first.headers["accept"], "application/json");
    let traces: Vec<_> = first.headers.get_all("x-trace").iter().collect();
    assert_eq!(
        traces,
        ["a", "b"],
        "repeated headers keep every value, trimmed"
    );
    assert!(first.body.is_empty(), "no body line means an empty body");
    assert_eq!(targets[1].method, Method::HEAD);
    assert!(
        targets[1].headers.is_empty(),
        "back-to-back target has its own headers"
    );
    assert_eq!(targets[2].method, Method::DELETE);
    assert_eq!(targets[2].url.port_u16(), Some(8080));
    assert_eq!(targets[2].headers["host"], "other.example");
}

#[test]
fn http_every_vegeta_method_is_accepted() {
    for method in METHODS {
        let targets = http(&format!("{method} http://h/")).expect("known method parses");
        assert_eq!(targets[0].method.as_str(), method);
    }
}

#[test]
fn load_reads_bodies_relative_to_the_targets_file() {
    let dir = scratch_dir("bodies");
    std::fs::create_dir_all(dir.join("bodies")).expect("create bodies dir");
    std::fs::write(dir.join("bodies/item.json"), b"{\"a\":1}").expect("write body");
    let absolute = dir.join("abs.bin");
    std::fs::write(&absolute, [0_u8, 159, 255]).expect("write body");
    let text = format!(
        "POST https://h/items\nContent-Type: application/json\n@bodies/item.json\n\n\
         PUT https://h/raw\n@ {}\nGET https://h/after-body\n",
        absolute.display()
    );
    let path = dir.join("targets.txt");
    std::fs::write(&path, text).expect("write targets");
    let targets = load(&path, TargetFormat::Http).expect("targets load");
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert_eq!(targets[0].body, &b"{\"a\":1}"[..]);
    assert_eq!(targets[0].headers["content-type"], "application/json");
    assert_eq!(
        targets[1].body,
        &[0_u8, 159, 255][..],
        "absolute body path, binary body"
    );
    assert!(targets[2].body.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_names_an_unreadable_body_file_and_the_targets_line() {
    let dir = scratch_dir("missing-body");
    let path = dir.join("targets.txt");
    std::fs::write(&path, "# c\nPOST https://h/\n@missing.json\n").expect("write targets");
    let err = load(&path, TargetFormat::Http).expect_err("missing body file is an error");
    assert_eq!(err.line, Some(3));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:1: cannot read body file `missing.json` (at {}): {}, expected a readable file",
            path.display(),
            dir.join("missing.json").display(),
            std::io::Error::from_raw_os_error(2),
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_reports_a_missing_targets_file_without_a_line() {
    let path = scratch_dir("no-file").join("nope.txt");
    let err = load(&path, TargetFormat::Json).expect_err("missing file is an error");
    assert_eq!(err.line, None);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read the targets file: {}",
            path.display(),
            std::io::Error::from_raw_os_error(2)
        )
    );
}

#[test]
fn http_errors_name_file_line_column_and_what_was_expected() {
    let all_methods = METHODS.join(", ");
    let cases: Vec<(&str, String)> = vec![
        ("", "t.txt:1: no targets found, expected at least one `METHOD URL` line".into()),
        ("# only\n\n  # comments\n", "t.txt:1: no targets found, expected at least one `METHOD URL` line".into()),
        ("get http://h/", "t.txt:1:1: method `get` is not uppercase, expected `GET`".into()),
        ("\n  Post http://h/", "t.txt:2:3: method `Post` is not uppercase, expected `POST`".into()),
        ("FETCH http://h/", format!("t.txt:1:1: unknown method `FETCH`, expected one of {all_methods}")),
        ("GET", "t.txt:1:1: missing URL after `GET`, expected `GET <absolute http(s) URL>`".into()),
        ("http://h/x", "t.txt:1:1: URL `http://h/x` has no method before it, expected `METHOD URL` such as `GET http://h/x`".into()),
        ("GET /path", "t.txt:1:5: relative URL `/path`, expected an absolute http:// or https:// URL".into()),
        ("GET example.com/x", "t.txt:1:5: relative URL `example.com/x`, expected an absolute http:// or https:// URL".into()),
        ("GET ftp://h/file", "t.txt:1:5: unsupported scheme `ftp` in `ftp://h/file`, expected http or https".into()),
        ("GET http://[::1/x", "t.txt:1:5: invalid URL `http://[::1/x` (invalid authority), expected an absolute http:// or https:// URL".into()),
        ("GET  http://h/ now please", "t.txt:1:16: unexpected `now please` after the URL, expected only `METHOD URL` on this line".into()),
        ("Host: h", "t.txt:1:1: header line `Host: h` outside a target, expected a `METHOD URL` line first".into()),
        ("@body.json", "t.txt:1:1: body line `@body.json` outside a target, expected a `METHOD URL` line first".into()),
        ("GET http://h/\nAccept application/json", "t.txt:2:1: header line `Accept application/json` has no colon, expected `Name: value`".into()),
        ("GET http://h/\n Bad Name: x", "t.txt:2:2: invalid header name `Bad Name`, expected a token such as `Content-Type`".into()),
        ("GET http://h/\n: x", "t.txt:2:1: invalid header name ``, expected a token such as `Content-Type`".into()),
        ("GET http://h/\nX-A: a\u{1}b", "t.txt:2:6: invalid value for header `X-A`, expected text without control characters".into()),
        ("GET http://h/\n@", "t.txt:2:1: missing path after `@`, expected `@path/to/body`".into()),
        ("GET http://h/\n@b.json", "t.txt:2:1: body file `b.json` cannot be read from in-memory input, expected targets without `@file` lines".into()),
        ("GET http://h/\nX: 1\n\nGET http://h/\nFOO http://h/", format!("t.txt:5:1: unknown method `FOO`, expected one of {all_methods}")),
        ("GET http://h/\nget http://h/", "t.txt:2:1: method `get` is not uppercase, expected `GET`".into()),
        ("GET http://h/\nPUT /relative", "t.txt:2:5: relative URL `/relative`, expected an absolute http:// or https:// URL".into()),
    ];
    for (text, expected) in cases {
        assert_eq!(http_err(text), expected, "input {text:?}");
    }
}

#[test]
fn http_line_after_the_body_line_is_an_error() {
    let dir = scratch_dir("after-body");
    std::fs::write(dir.join("b"), "x").expect("write body");
    let err = parse_http("GET http://h/\n@b\nX-A: 1\n", Path::new("t.txt"), &dir)
        .expect_err("header after body is an error")
        .to_string();
    assert_eq!(
        err,
        "t.txt:3:1: `X-A: 1` after the body line, expected a blank line or the next `METHOD URL`"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leading_byte_order_mark_is_ignored() {
    let targets = http("\u{feff}GET http://h/\n").expect("BOM before an http target");
    assert_eq!(targets[0].method, Method::GET);
    let targets =
        json("\u{feff}{\"method\":\"PUT\",\"url\":\"http://h/\"}").expect("BOM before JSON");
    assert_eq!(targets[0].method, Method::PUT);
}

#[test]
fn invalid_utf8_names_line_and_column() {
    let bytes = b"GET http://h/\nX-\xc3\xa9t\xe9: 1\n";
    for format in [TargetFormat::Http, TargetFormat::Json] {
        let err = parse_bytes(bytes, format, Path::new("t.txt")).expect_err("not UTF-8");
        assert_eq!(
            err.to_string(),
            "t.txt:2:5: invalid UTF-8, expected UTF-8 text"
        );
    }
}

#[test]
fn json_valid_lines_with_headers_and_bodies() {
    let text = concat!(
        r#"{"method":"POST","url":"https://h/items","header":{"Content-Type":["application/json"],"X-A":["1","2"]},"body":"eyJhIjoxfQ=="}"#,
        "\n\n   \n",
        r#"{"method":"GET","url":"http://h:81/","header":{"X-One":"solo"},"body":null}"#,
        "\r\n",
        r#"{"url":"http://h/","method":"HEAD"}"#,
    );
    let targets = json(text).expect("valid JSON targets parse");
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert_eq!(targets[0].method, Method::POST);
    assert_eq!(targets[0].body, &b"{\"a\":1}"[..]);
    assert_eq!(targets[0].headers["content-type"], "application/json");
    let values: Vec<_> = targets[0].headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(
        targets[1].headers["x-one"], "solo",
        "a lone string is one value"
    );
    assert!(targets[1].body.is_empty(), "null body is empty");
    assert_eq!(targets[2].method, Method::HEAD);
    assert!(targets[2].headers.is_empty());
}

#[test]
fn json_errors_name_line_and_field() {
    let all_methods = METHODS.join(", ");
    let cases: Vec<(&str, String)> = vec![
        ("", "t.json:1: no targets found, expected at least one JSON object per line".into()),
        ("\n  \n", "t.json:1: no targets found, expected at least one JSON object per line".into()),
        ("{\"method\":\"GET\",}", "t.json:1:17: invalid JSON (trailing comma), expected one JSON object per line".into()),
        ("\n{\"method\" \"GET\"}", "t.json:2:11: invalid JSON (expected `:`), expected one JSON object per line".into()),
        ("{} {}", "t.json:1:4: invalid JSON (trailing characters), expected one JSON object per line".into()),
        ("[1]", "t.json:1: found an array, expected a JSON object like {\"method\":\"GET\",\"url\":\"https://host/\"}".into()),
        (r#"{"method":"GET","url":"http://h/","headers":{}}"#, "t.json:1: unknown field `headers`, expected one of method, url, header, body".into()),
        (r#"{"url":"http://h/"}"#, "t.json:1: missing field `method`, expected a string".into()),
        (r#"{"method":"GET"}"#, "t.json:1: missing field `url`, expected a string".into()),
        (r#"{"method":7,"url":"http://h/"}"#, "t.json:1: field `method` is a number, expected a string".into()),
        (r#"{"method":"get","url":"http://h/"}"#, "t.json:1: field `method`: method `get` is not uppercase, expected `GET`".into()),
        (r#"{"method":"FETCH","url":"http://h/"}"#, format!("t.json:1: field `method`: unknown method `FETCH`, expected one of {all_methods}")),
        (r#"{"method":"GET","url":"/x"}"#, "t.json:1: field `url`: relative URL `/x`, expected an absolute http:// or https:// URL".into()),
        (r#"{"method":"GET","url":"ws://h/"}"#, "t.json:1: field `url`: unsupported scheme `ws` in `ws://h/`, expected http or https".into()),
        (r#"{"method":"GET","url":"http://h/","body":"!!"}"#, "t.json:1: field `body`: invalid base64 (Invalid symbol 33, offset 0.), expected standard base64 with padding (RFC 4648 section 4)".into()),
        (r#"{"method":"GET","url":"http://h/","body":5}"#, "t.json:1: field `body` is a number, expected a base64 string".into()),
        (r#"{"method":"GET","url":"http://h/","header":[]}"#, "t.json:1: field `header` is an array, expected an object of string arrays".into()),
        (r#"{"method":"GET","url":"http://h/","header":{"X":[1]}}"#, "t.json:1: field `header.X` is a number, expected a string or an array of strings".into()),
        (r#"{"method":"GET","url":"http://h/","header":{"Bad Name":["1"]}}"#, "t.json:1: field `header`: invalid header name `Bad Name`, expected a token such as `Content-Type`".into()),
        (r#"{"method":"GET","url":"http://h/","header":{"X":["a\nb"]}}"#, "t.json:1: field `header`: invalid value for header `X`, expected text without control characters".into()),
    ];
    for (text, expected) in cases {
        assert_eq!(json_err(text), expected, "input {text:?}");
    }
}

#[test]
fn format_round_trips_through_its_name() {
    for format in [TargetFormat::Http, TargetFormat::Json] {
        assert_eq!(
            format.to_string().parse::<TargetFormat>().ok(),
            Some(format)
        );
    }
    let err = "HTTP"
        .parse::<TargetFormat>()
        .expect_err("names are lowercase");
    assert_eq!(
        err.to_string(),
        "unknown targets format `HTTP`, expected `http` or `json`"
    );
}

/// splitmix64: deterministic pseudo-random numbers without a rng dependency.
fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn never_panics_on_arbitrary_or_mutated_input() {
    let seeds: [&[u8]; 4] = [
        b"# c\nGET https://h:8443/a?b=c\nX-A: 1\nHost: x\n\nPOST http://h/\n@body\n",
        b"PUT http://[::1]:80/x\nA:\n\nget /x\nFOO http://h/ z\n\xff",
        br#"{"method":"POST","url":"https://h/","header":{"A":["1","2"],"B":"x"},"body":"aGk="}"#,
        b"{\"method\":\"GET\",\"url\":\"http://h/\",\"body\":null}\n\n[{\"a\":[[[[1e999]]]]}]\n",
    ];
    let dictionary: [&[u8]; 14] = [
        b"GET ",
        b"http://",
        b"https://",
        b"@",
        b":",
        b"\n",
        b"\r\n",
        b"#",
        b"{",
        b"}",
        b"\"method\":",
        b"\"header\":{\"",
        b"[",
        b"\xc3",
    ];
    let mut state = 0x5eed_u64;
    for case in 0..20_000_u32 {
        let mut input: Vec<u8> = if case % 4 == 0 {
            let len = (next_u64(&mut state) % 96) as usize;
            (0..len).map(|_| next_u64(&mut state) as u8).collect()
        } else {
            seeds[(next_u64(&mut state) % seeds.len() as u64) as usize].to_vec()
        };
        for _ in 0..=next_u64(&mut state) % 6 {
            let at = (next_u64(&mut state) as usize) % (input.len() + 1);
            match next_u64(&mut state) % 4 {
                0 if at < input.len() => input[at] = next_u64(&mut state) as u8,
                1 if at < input.len() => {
                    input.remove(at);
                }
                2 => {
                    let word = dictionary[(next_u64(&mut state) % 14) as usize];
                    input.splice(at..at, word.iter().copied());
                }
                _ => input.truncate(at),
            }
        }
        for format in [TargetFormat::Http, TargetFormat::Json] {
            if let Err(err) = parse_bytes(&input, format, Path::new("fuzz")) {
                // Rendering the message must not panic either.
                let _ = err.to_string();
            }
        }
    }
}
