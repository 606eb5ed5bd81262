//! The finders against real binaries: a tiny crypto/tls client built by the installed Go
//! toolchain, stripped and not, checked against `go tool nm`, `go tool objdump` and the
//! unstripped build's `.symtab`; and the system's libssl against `nm -D` and `readelf -l`.
//! A missing `go` fails the tests (`cargo xtask setup` installs golang-go).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object, ObjectSection, ObjectSymbol};

use super::{
    GoConnLayout, GoTlsTargets, GoVersion, LIBSSL, TLS_READ, TLS_WRITE, UprobeError, find_library,
    go_probe, go_tls_targets, is_go_binary, openssl_targets,
};

/// A directory removed when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("faultline-uprobe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, panicking with its output when it cannot start or fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e}; the uprobe tests need Go and binutils: install golang-go \
             (`cargo xtask setup` does) and binutils",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `go <args>` in `dir`, hermetic: caches in the scratch directory, no network, no cgo,
/// the installed toolchain only.
fn go(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("go");
    cmd.args(args)
        .current_dir(dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOFLAGS");
    run(&mut cmd)
}

/// Writes a main package with `source` and its go.mod into `dir`.
fn write_module(dir: &Path, source: &str) {
    std::fs::write(dir.join("go.mod"), "module probe\n\ngo 1.17\n").unwrap();
    std::fs::write(dir.join("main.go"), source).unwrap();
}

const TLS_CLIENT: &str = r#"package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", "127.0.0.1:1", &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		os.Exit(1)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	buf := make([]byte, 512)
	c.Read(buf)
}
"#;

/// One instruction of `go tool objdump`'s listing: address and encoding.
#[derive(Debug)]
struct Listed {
    vaddr: u64,
    bytes: Vec<u8>,
    text: String,
}

/// `go tool objdump -s` of one function: lines `file:line \t addr \t hex \t asm`.
fn objdump(dir: &Path, binary: &Path, function: &str) -> Vec<Listed> {
    let pattern = format!("^{}$", regex_quote(function));
    let out = go(
        dir,
        &["tool", "objdump", "-s", &pattern, binary.to_str().unwrap()],
    );
    out.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').filter(|c| !c.is_empty()).collect();
            let [_, addr, hex, text, ..] = cols[..] else {
                return None;
            };
            let vaddr = u64::from_str_radix(addr.strip_prefix("0x")?, 16).ok()?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<_, _>>()
                .ok()?;
            Some(Listed {
                vaddr,
                bytes,
                text: text.trim().to_owned(),
            })
        })
        .collect()
}

fn regex_quote(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            ("().*[]".contains(c).then_some('\\'))
                .into_iter()
                .chain([c])
        })
        .collect()
}

/// `go tool nm`'s address of `function`.
fn nm_vaddr(dir: &Path, binary: &Path, function: &str) -> u64 {
    let out = go(dir, &["tool", "nm", binary.to_str().unwrap()]);
    let line = out
        .lines()
        .find(|l| l.trim_end().ends_with(&format!(" T {function}")))
        .unwrap_or_else(|| panic!("go tool nm lists no {function}"));
    u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap()
}

/// The file offset of `function` from the unstripped build's `.symtab`, translated the
/// way aya does it (through the section holding the symbol), independently of ours.
fn symtab_offset(data: &[u8], function: &str) -> u64 {
    let file = object::File::parse(data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(function))
        .unwrap_or_else(|| panic!(".symtab has no {function}"));
    let section = file.section_by_index(sym.section_index().unwrap()).unwrap();
    sym.address() - section.address() + section.file_range().unwrap().0
}

fn decode_one(bytes: &[u8], vaddr: u64) -> Mnemonic {
    let mut decoder = Decoder::with_ip(64, bytes, vaddr, DecoderOptions::NONE);
    decoder.decode().mnemonic()
}

/// Builds the TLS client unstripped and stripped; returns their paths.
fn build_tls_client(dir: &Path) -> (PathBuf, PathBuf) {
    write_module(dir, TLS_CLIENT);
    let (full, stripped) = (dir.join("full"), dir.join("stripped"));
    go(dir, &["build", "-o", full.to_str().unwrap(), "."]);
    go(
        dir,
        &[
            "build",
            "-ldflags",
            "-s -w",
            "-o",
            stripped.to_str().unwrap(),
            ".",
        ],
    );
    (full, stripped)
}

/// The stripped build's targets agree with the unstripped build's symbols and with
/// objdump's listing of each function.
fn check_against_toolchain(dir: &Path, full: &Path, stripped: &Path) -> GoTlsTargets {
    let full_data = std::fs::read(full).unwrap();
    let stripped_data = std::fs::read(stripped).unwrap();
    let stripped_file = object::File::parse(&*stripped_data).unwrap();
    assert!(stripped_file.section_by_name(".symtab").is_none());
    assert_eq!(stripped_file.symbols().count(), 0, "-s left symbols");

    let targets = go_tls_targets(stripped).unwrap();
    let from_full = go_tls_targets(full).unwrap();
    assert_eq!(targets.write, from_full.write, "stripping moved Write");
    assert_eq!(targets.read, from_full.read, "stripping moved Read");

    assert_eq!(
        (
            targets.write.function.as_str(),
            targets.read.function.as_str()
        ),
        (TLS_WRITE, TLS_READ)
    );
    let installed = go(dir, &["env", "GOVERSION"]);
    assert_eq!(targets.go_version.raw, installed.trim());

    for probe in [&targets.write, &targets.read] {
        let f = probe.function.as_str();
        assert_eq!(
            probe.entry_vaddr,
            nm_vaddr(dir, full, f),
            "{f}: entry vs go tool nm"
        );
        assert_eq!(
            probe.entry_offset,
            symtab_offset(&full_data, f),
            "{f}: entry vs .symtab"
        );

        let listing = objdump(dir, full, f);
        let first = listing
            .first()
            .unwrap_or_else(|| panic!("objdump lists nothing for {f}"));
        let at = probe.entry_offset as usize;
        assert_eq!(first.vaddr, probe.entry_vaddr);
        assert_eq!(
            &stripped_data[at..at + first.bytes.len()],
            first.bytes,
            "{f}: prologue"
        );

        let listed_rets: Vec<u64> = listing
            .iter()
            .filter(|l| l.text == "RET")
            .map(|l| l.vaddr)
            .collect();
        let found_rets: Vec<u64> = probe
            .return_offsets
            .iter()
            .map(|o| o - probe.entry_offset + probe.entry_vaddr)
            .collect();
        assert!(!found_rets.is_empty(), "{f}: no RET found");
        assert_eq!(found_rets, listed_rets, "{f}: RETs vs go tool objdump");
        for (&offset, &vaddr) in probe.return_offsets.iter().zip(&found_rets) {
            let bytes = &stripped_data[offset as usize..];
            assert_eq!(
                decode_one(bytes, vaddr),
                Mnemonic::Ret,
                "{f}: {offset:#x} is no RET"
            );
        }
    }
    targets
}

/// The same targets when the section headers are gone too (`e_shoff`, `e_shnum` and
/// `e_shstrndx` zeroed): the table and build info are found by scanning segments.
fn check_without_section_headers(dir: &Path, stripped: &Path, expected: &GoTlsTargets) {
    let mut data = std::fs::read(stripped).unwrap();
    data[0x28..0x30].fill(0);
    data[0x3c..0x40].fill(0);
    let bare = dir.join("no-sections");
    std::fs::write(&bare, &data).unwrap();
    assert_eq!(object::File::parse(&*data).unwrap().sections().count(), 0);
    assert!(is_go_binary(&bare));
    let targets = go_tls_targets(&bare).unwrap();
    assert_eq!(targets.write, expected.write);
    assert_eq!(targets.read, expected.read);
    assert_eq!(targets.go_version, expected.go_version);
}

#[test]
fn go_tls_targets_of_stripped_build_match_symtab_and_objdump() {
    let scratch = Scratch::new("tls");
    let dir = &scratch.0;
    let (full, stripped) = build_tls_client(dir);
    let targets = check_against_toolchain(dir, &full, &stripped);
    check_without_section_headers(dir, &stripped, &targets);

    assert!(is_go_binary(&stripped) && is_go_binary(&full));
    let err = go_probe(&stripped, "crypto/tls.(*Conn).NoSuchMethod").unwrap_err();
    assert!(matches!(err, UprobeError::FunctionNotFound { .. }));
    let shown = err.to_string();
    assert!(
        shown.contains(stripped.to_str().unwrap()) && shown.contains("NoSuchMethod"),
        "{shown}"
    );
    let main = go_probe(&stripped, "runtime.main").unwrap();
    assert!(main.entry_offset > 0 && !main.return_offsets.is_empty());
    eprintln!(
        "{}: Write at {:#x} with {} RETs, Read at {:#x} with {} RETs",
        targets.go_version.raw,
        targets.write.entry_offset,
        targets.write.return_offsets.len(),
        targets.read.entry_offset,
        targets.read.return_offsets.len()
    );
}

const LAYOUT_PROBE: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
)

func field(t reflect.Type, name string) reflect.StructField {
	f, ok := t.FieldByName(name)
	if !ok {
		panic(name)
	}
	return f
}

func main() {
	conn := field(reflect.TypeOf(tls.Conn{}), "conn")
	inner := field(reflect.TypeOf(net.TCPConn{}), "conn")
	fd := field(inner.Type, "fd")
	sysfd := field(field(fd.Type.Elem(), "pfd").Type, "Sysfd")
	pfd := field(fd.Type.Elem(), "pfd")
	fmt.Println(conn.Offset, inner.Offset+fd.Offset, pfd.Offset+sysfd.Offset)
}
"#;

#[test]
fn conn_layout_matches_the_installed_toolchain() {
    let scratch = Scratch::new("layout");
    let dir = &scratch.0;
    write_module(dir, LAYOUT_PROBE);
    let out = go(dir, &["run", "."]);
    let found: Vec<u64> = out.split_whitespace().map(|v| v.parse().unwrap()).collect();
    let version = GoVersion::parse(go(dir, &["env", "GOVERSION"]).trim()).unwrap();
    let layout = GoConnLayout::for_version(&version).unwrap();
    assert_eq!(
        found,
        [
            layout.tls_conn_conn,
            layout.tcp_conn_fd,
            layout.net_fd_sysfd
        ],
        "{}",
        version.raw
    );
    assert_eq!(layout.iface_data, 8);
}

/// `readelf -lW`'s `PT_LOAD`s: (offset, vaddr, filesz, executable).
fn readelf_loads(path: &Path) -> Vec<(u64, u64, u64, bool)> {
    let out = run(Command::new("readelf").arg("-lW").arg(path));
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    out.lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (
                hex(cols[1]),
                hex(cols[2]),
                hex(cols[4]),
                cols[6..].concat().contains('E'),
            )
        })
        .collect()
}

#[test]
fn openssl_offsets_match_nm_and_program_headers() {
    let path = find_library(LIBSSL).unwrap_or_else(|e| panic!("{e}: install libssl3"));
    let targets = openssl_targets(&path).unwrap();
    let nm = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&path));
    let loads = readelf_loads(&path);
    let mut checked = 0;
    for (name, offset) in targets.functions() {
        let line = nm
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|n| n.split('@').next() == Some(name))
            })
            .unwrap_or_else(|| panic!("nm -D lists no {name} in {}", path.display()));
        let vaddr = u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap();
        let &(p_offset, p_vaddr, _, executable) = loads
            .iter()
            .find(|(_, v, size, _)| (*v..v + size).contains(&vaddr))
            .unwrap_or_else(|| panic!("{name} at {vaddr:#x} is in no PT_LOAD"));
        assert!(executable, "{name} is not in an executable PT_LOAD");
        assert_eq!(offset, Some(vaddr - p_vaddr + p_offset), "{name}");
        checked += 1;
    }
    assert_eq!(checked, 4);
    assert!(!is_go_binary(&path));
    let err = go_tls_targets(&path).unwrap_err();
    assert!(matches!(err, UprobeError::NoPclnTab { .. }), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
    assert!(!is_go_binary(Path::new("/nonexistent/faultline")));
}
