//! The one recipe that builds the kernel programs. `cargo xtask build-ebpf` calls it, and
//! the analyzer's build script looks for its output at [`object_path`].
use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::{setup, sh};

/// The BPF target; little-endian like every host we run on.
pub const TARGET: &str = "bpfel-unknown-none";

/// Where the object lands. Keep in sync with analyzer-user/build.rs.
pub fn object_path(release: bool) -> PathBuf {
    sh::workspace_root()
        .join("target/ebpf")
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("analyzer-ebpf")
}

/// `cargo` on the nightly toolchain, with the outer (stable) cargo's variables removed so
/// they cannot leak into the nested build.
pub fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]);
    for var in [
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        c.env_remove(var);
    }
    c
}

fn cargo_for_bpf(subcommand: &str, release: bool) -> Command {
    let root = sh::workspace_root();
    let mut c = nightly_cargo();
    c.current_dir(root.join("analyzer-ebpf"))
        .args([
            subcommand,
            "-Z",
            "build-std=core",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(root.join("target/ebpf"));
    if release {
        c.arg("--release");
    }
    c
}

/// Builds the kernel object.
pub fn build(release: bool) -> Result<()> {
    if !setup::bpf_linker_ok() {
        bail!("bpf-linker is not installed: run `cargo xtask setup` first");
    }
    sh::run(&mut cargo_for_bpf("build", release))?;
    let obj = object_path(release);
    if !obj.is_file() {
        bail!("the build succeeded but {} is missing", obj.display());
    }
    eprintln!("built {}", obj.display());
    Ok(())
}

/// Lints the kernel crate on its own target.
pub fn clippy() -> Result<()> {
    let mut c = cargo_for_bpf("clippy", false);
    c.args(["--", "-D", "warnings", "-D", "clippy::too_many_lines"]);
    sh::run(&mut c)
}
