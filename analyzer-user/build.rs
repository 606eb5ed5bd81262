//! Locates the kernel object built by `cargo xtask build-ebpf` so `src/probe.rs` can embed
//! it. The object is built by exactly one recipe (xtask/src/ebpf.rs); this script only
//! looks for its output and, when it is missing, says in one line what to run.
use std::{env, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    println!("cargo:rerun-if-env-changed=FAULTLINE_EBPF_OBJECT");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let path = match env::var_os("FAULTLINE_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
            // Keep in sync with xtask/src/ebpf.rs::object_path.
            manifest
                .join("../target/ebpf/bpfel-unknown-none")
                .join(if release { "release" } else { "debug" })
                .join("analyzer-ebpf")
        }
    };
    println!("cargo:rerun-if-changed={}", path.display());
    if !path.is_file() {
        let flag = if release { " --release" } else { "" };
        eprintln!(
            "error: eBPF object {} not found: run `cargo xtask build-ebpf{flag}` first",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "cargo:rustc-env=FAULTLINE_EBPF_OBJECT_PATH={}",
        path.display()
    );
    ExitCode::SUCCESS
}
