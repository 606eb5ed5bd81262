//! `cargo xtask setup`: installs, idempotently, what a fresh machine lacks for building
//! and testing faultline, saying what it does. Facts from shared/TOOLCHAIN.md: bpf-linker
//! must be built against LLVM 22 (nightly's LLVM) from Debian's llvm-22-dev.
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sh;

/// Debian packages the build and the tests use: LLVM for bpf-linker, curl as a foreign
/// client, iproute2 for test namespaces, util-linux for setpriv (unprivileged checks),
/// nftables for `loadgen packets syn`, and the real servers and foreign clients of
/// `testbed::foreign` (tests/src/foreign.rs).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("curl", "a foreign HTTP client for tests and the demo"),
    ("iproute2", "network namespaces for tests"),
    ("util-linux", "setpriv for unprivileged checks"),
    (
        "nftables",
        "nft for loadgen packets syn's temporary RST-drop rule and its tests",
    ),
    (
        "nginx-light",
        "a real reverse proxy for the analyzer's tests: 444 closes, a default certificate, \
         GOAWAY after keepalive_requests",
    ),
    (
        "haproxy",
        "a real load balancer for the analyzer's tests: http-request reject",
    ),
    (
        "golang-go",
        "builds tests/go: a net/http server and client, the stack of vegeta and k6",
    ),
    (
        "nghttp2-client",
        "nghttp and h2load, HTTP/2 clients for tests",
    ),
    ("nghttp2-server", "nghttpd, an HTTP/2 server for tests"),
    (
        "python3",
        "Python's http.client and ssl as a foreign client in tests",
    ),
];

/// Packages whose maintainer scripts start a system service (nginx on port 80, haproxy)
/// when installed, with the service's name; the tests run their own instances and want
/// none.
const SERVICE_PACKAGES: &[(&str, &str)] = &[("nginx-light", "nginx"), ("haproxy", "haproxy")];

/// Debian's hook that maintainer scripts ask before starting a service (invoke-rc.d(8)
/// and deb-systemd-invoke both run it); exit code 101 means "action forbidden".
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Runs every step; each skips itself when its work is already done.
pub fn run() -> Result<()> {
    rust_src()?;
    apt()?;
    bpf_linker()?;
    cargo_fuzz()?;
    eprintln!("setup: done");
    Ok(())
}

fn rust_src() -> Result<()> {
    let out = sh::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is missing (rustup says: {}); faultline's kernel side needs \
             the machine image's nightly",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        eprintln!("setup: nightly rust-src: present");
        return Ok(());
    }
    eprintln!("setup: installing nightly rust-src");
    sh::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn apt_installed(pkg: &str) -> bool {
    sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(p, why)| {
            let have = apt_installed(p);
            eprintln!(
                "setup: {p} ({why}): {}",
                if have { "present" } else { "missing" }
            );
            !have
        })
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "installing {} needs root: run `sudo cargo xtask setup`",
            missing.join(" ")
        );
    }
    sh::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let services: Vec<&str> = SERVICE_PACKAGES
        .iter()
        .filter(|(p, _)| missing.contains(p))
        .map(|(_, daemon)| *daemon)
        .collect();
    let no_starts = if services.is_empty() {
        None
    } else {
        Some(NoServiceStarts::install()?)
    };
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    drop(no_starts);
    stop_started(&services)
}

/// Stops any of `daemons` running after their packages were installed (a policy-rc.d
/// already on the machine may have allowed the start).
fn stop_started(daemons: &[&str]) -> Result<()> {
    for daemon in daemons {
        if sh::succeeds(Command::new("pgrep").args(["-x", daemon])) {
            eprintln!("setup: the {daemon} service started on install: stopping it");
            sh::run(Command::new("service").args([daemon, "stop"]))?;
        }
    }
    Ok(())
}

/// A policy-rc.d refusing every service start, present while it lives; one already on
/// the machine (Debian's container images ship one that exits 101) is left alone.
/// Services stay enabled for the next boot under systemd; nothing is started now.
struct NoServiceStarts {
    wrote: bool,
}

impl NoServiceStarts {
    fn install() -> Result<Self> {
        let path = std::path::Path::new(POLICY_RC_D);
        if path.exists() {
            eprintln!("setup: {POLICY_RC_D} present: left as it is");
            return Ok(NoServiceStarts { wrote: false });
        }
        eprintln!("setup: writing {POLICY_RC_D} (exit 101) so no nginx or haproxy service starts");
        std::fs::write(
            path,
            "#!/bin/sh\n# cargo xtask setup: no service starts.\nexit 101\n",
        )
        .with_context(|| format!("write {POLICY_RC_D}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(NoServiceStarts { wrote: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.wrote {
            match std::fs::remove_file(POLICY_RC_D) {
                Ok(()) => eprintln!("setup: removed {POLICY_RC_D}"),
                Err(e) => eprintln!("setup: could not remove {POLICY_RC_D}: {e}"),
            }
        }
    }
}

/// True if a bpf-linker that runs is on PATH.
pub fn bpf_linker_ok() -> bool {
    sh::succeeds(Command::new("bpf-linker").arg("--version"))
}

fn bpf_linker() -> Result<()> {
    if bpf_linker_ok() {
        eprintln!("setup: bpf-linker: present");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker against {LLVM_PREFIX} (about 3 minutes on 2 cores)");
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    sh::run(
        sh::cargo()
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
    )?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but does not run: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// cargo-fuzz, for the bounded fuzzing runs of `cargo xtask test` (libFuzzer, nightly).
fn cargo_fuzz() -> Result<()> {
    if sh::succeeds(sh::cargo().args(["fuzz", "--version"])) {
        eprintln!("setup: cargo-fuzz: present");
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz (about 1 minute)");
    sh::run(sh::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    Ok(())
}
