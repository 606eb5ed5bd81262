//! A firewall fault for tests: an nftables table of the test's own with one rule on one
//! hook, deleted when dropped. Needs root and `nft` (installed by `cargo xtask setup`).
use std::process::{Command, Stdio};

/// Where the rule sits: `input` sees packets arriving (after a capture on the interface
/// has seen them, as on the wire); `output` sees packets this host sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Input,
    Output,
}

/// A table `inet faultline_test_<pid>_<n>` holding one filter chain with `rule`.
#[derive(Debug)]
pub struct NftTable(String);

impl NftTable {
    /// Installs the table.
    ///
    /// # Panics
    /// When `nft` is missing or refuses the rule: the test cannot run its fault.
    pub fn new(hook: Hook, rule: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("faultline_test_{}_{n}", std::process::id());
        let hook = match hook {
            Hook::Input => "input",
            Hook::Output => "output",
        };
        let script = format!(
            "table inet {name} {{\n chain c {{\n  type filter hook {hook} priority 0; policy accept;\n  {rule}\n }}\n}}\n"
        );
        let st = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("piped stdin")
                    .write_all(script.as_bytes())?;
                c.wait()
            });
        assert!(
            st.is_ok_and(|s| s.success()),
            "nft (nftables, installed by cargo xtask setup) refused: {script}"
        );
        Self(name)
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}
