//! Building the Go programs under `tests/go/` with Debian's Go, once per test process
//! and cached across processes: the binary lives under the cargo target directory,
//! named by a hash of its source, its build flags and `go version`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::error::Error;
use super::process;

/// The first build compiles Go's standard library (about 35 s on 2 idle cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// A Go program of `tests/go/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoProgram {
    /// `tests/go/server`, with symbols (its panics print readable stacks).
    Server,
    /// `tests/go/client`, stripped (`-s -w`) as release builds of vegeta and k6 are.
    Client,
}

impl GoProgram {
    fn name(self) -> &'static str {
        match self {
            GoProgram::Server => "server",
            GoProgram::Client => "client",
        }
    }

    fn ldflags(self) -> &'static str {
        match self {
            GoProgram::Server => "",
            GoProgram::Client => "-s -w",
        }
    }
}

/// The built binary of `program`, building it on first use. A failed build is
/// remembered for the rest of the process (every caller gets the same message).
pub(crate) fn binary(program: GoProgram) -> Result<PathBuf, Error> {
    static SERVER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static CLIENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match program {
        GoProgram::Server => &SERVER,
        GoProgram::Client => &CLIENT,
    };
    cell.get_or_init(|| build(program).map_err(|e| error_chain(&e)))
        .clone()
        .map_err(|output| Error::GoBuild {
            program: format!("tests/go/{}", program.name()),
            output,
        })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Where the Go sources are: `tests/go`, a module with no dependencies.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// The cargo target directory this test binary was built in: the nearest ancestor of
/// the running executable holding the `CACHEDIR.TAG` cargo writes at the target root.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A `go` command that builds offline from the local toolchain, with its caches under
/// `cache`, ignoring the user's Go environment file.
fn go_command(go: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(go);
    cmd.env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0");
    cmd
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(Error::io(format!("read {}", path.display())))
}

fn build(program: GoProgram) -> Result<PathBuf, Error> {
    let go = process::find_binary("go", "golang-go")?;
    let cache = target_dir().join("faultline-go");
    let src = source_dir();
    let version = process::run_bounded(
        "go",
        go_command(&go, &cache).arg("version"),
        Duration::from_secs(30),
    )?;
    let go_mod = read(&src.join("go.mod"))?;
    let main = read(&src.join(program.name()).join("main.go"))?;
    let hash = fnv1a(&[
        program.name().as_bytes(),
        program.ldflags().as_bytes(),
        version.stdout.as_bytes(),
        &go_mod,
        &main,
    ]);
    let bin_dir = cache.join("bin");
    let out = bin_dir.join(format!("{}-{hash:016x}", program.name()));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&bin_dir)
        .map_err(Error::io(format!("create {}", bin_dir.display())))?;
    // Built under a private name, then renamed: another test process building the same
    // program at the same time never runs a half-written file.
    let tmp = bin_dir.join(format!(
        ".{}-{hash:016x}.{}",
        program.name(),
        std::process::id()
    ));
    let mut cmd = go_command(&go, &cache);
    cmd.current_dir(&src)
        .args(["build", "-trimpath", "-buildvcs=false"])
        .arg(format!("-ldflags={}", program.ldflags()))
        .arg("-o")
        .arg(&tmp)
        .arg(format!("./{}", program.name()));
    let run = process::run_bounded("go", &mut cmd, BUILD_TIMEOUT)?;
    if !run.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::GoBuild {
            program: format!("tests/go/{}", program.name()),
            output: format!("{}{}", run.stdout, run.stderr),
        });
    }
    std::fs::rename(&tmp, &out).map_err(Error::io(format!("rename to {}", out.display())))?;
    Ok(out)
}
