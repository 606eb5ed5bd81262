//! `cargo xtask setup`: installs, idempotently, what a fresh machine lacks for building
//! and testing faultline, saying what it does. Facts from shared/TOOLCHAIN.md: bpf-linker
//! must be built against LLVM 22 (nightly's LLVM) from Debian's llvm-22-dev.
use std::process::Command;

use anyhow::{Result, bail};

use crate::sh;

/// Debian packages the build and the tests use: LLVM for bpf-linker, curl as a foreign
/// client, iproute2 for test namespaces, util-linux for setpriv (unprivileged checks),
/// nftables for `loadgen packets syn`.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("curl", "a foreign HTTP client for tests and the demo"),
    ("iproute2", "network namespaces for tests"),
    ("util-linux", "setpriv for unprivileged checks"),
    (
        "nftables",
        "nft for loadgen packets syn's temporary RST-drop rule and its tests",
    ),
];

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
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
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
