//! `analyzer check` as its users run it: as root it passes, and without privileges it
//! fails with a message that says what to do. Privileges are dropped in a child with
//! `setpriv` (util-linux), so these tests need root: CI and developers' machines are.
use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Output},
};

/// A copy of the binary in a fresh world-readable directory, so an unprivileged user can
/// execute it whatever the permissions of the checkout.
fn analyzer_copy() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("faultline-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("analyzer");
    std::fs::copy(env!("CARGO_BIN_EXE_analyzer"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests drop privileges from root: run them as root"
    );
}

#[test]
fn check_passes_as_root() {
    assert_root();
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .arg("check")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("[ok  ] test program loads"), "{t}");
    assert!(t.contains("[ok  ] tracepoint tcp:tcp_receive_reset"), "{t}");
    assert!(t.contains("host is ready"), "{t}");
}

#[test]
fn check_json_is_machine_readable() {
    assert_root();
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    let load = items
        .iter()
        .find(|i| i["name"] == "test program loads")
        .unwrap();
    assert_eq!(load["status"], "ok");
}

#[test]
fn check_fails_with_advice_as_an_unprivileged_user() {
    assert_root();
    let (dir, bin) = analyzer_copy();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .arg("check")
        .output()
        .expect("run setpriv (util-linux)");
    std::fs::remove_dir_all(&dir).ok();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("[FAIL] privileges"), "{t}");
    assert!(
        t.contains("euid 65534, effective capabilities: none"),
        "{t}"
    );
    assert!(t.contains("CAP_BPF") && t.contains("sudo analyzer"), "{t}");
    assert!(t.contains("host is NOT ready"), "{t}");
    assert!(
        t.contains("[warn] raw backend") && t.contains("CAP_NET_RAW"),
        "{t}"
    );
}

#[test]
fn check_fails_as_root_without_capabilities() {
    assert_root();
    // uid 0 is not enough: with an empty bounding set root holds no capability, and the
    // kernel refuses to load programs. The check must look at capabilities, not the uid.
    let o = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_analyzer"))
        .arg("check")
        .output()
        .expect("run setpriv (util-linux)");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("[FAIL] privileges"), "{t}");
    assert!(t.contains("euid 0, effective capabilities: none"), "{t}");
}
