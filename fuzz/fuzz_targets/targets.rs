#![no_main]
//! Fuzz target: the targets-file parsers must return `Ok` or `Err`, never panic, on any
//! bytes, in both formats (`@file` bodies are refused by `parse_bytes`, so no file I/O).

use std::path::Path;

use loadgen::targets::{TargetFormat, parse_bytes};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for format in [TargetFormat::Http, TargetFormat::Json] {
        match parse_bytes(data, format, Path::new("fuzz")) {
            Ok(targets) => assert!(!targets.is_empty(), "Ok with no targets ({format})"),
            // Rendering the message is part of the contract too.
            Err(err) => drop(err.to_string()),
        }
    }
});
