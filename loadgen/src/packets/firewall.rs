//! The temporary nftables table that keeps the host's own TCP stack out of a SYN probe.
//!
//! Our SYNs come from a raw socket, so when a SYN-ACK arrives for the probe's source port
//! no socket owns it and the kernel answers with an RST (tcp_v4_rcv -> no socket ->
//! tcp_v4_send_reset; RFC 9293 section 3.10.7.1). That RST would tear the server's
//! half-open connection down on the kernel's schedule, not ours, and count in its stats.
//! The table drops outgoing RSTs from the probe's source ports to the targets, except
//! those carrying our socket mark ([`PROBE_MARK`], SO_MARK): the probe sends its own RST
//! after each SYN-ACK so the server's SYN queue does not fill with half-open entries.
//!
//! The table is named `faultline_syn_<pid>` (`_<n>` added for a second run in the same
//! process) and removed by [`Firewall`]'s `Drop`: at the end, on error, on panic
//! (unwinding) and after Ctrl-C/SIGTERM (the run stops, then returns normally). Only a
//! SIGKILL leaves it behind; the next run deletes tables whose process is gone.
use std::{
    io::Write,
    net::IpAddr,
    ops::RangeInclusive,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// SO_MARK on the probe's raw socket: the rule lets RSTs with this mark through.
/// ("fa17" for faultline.)
pub const PROBE_MARK: u32 = 0x0fa1_7001;

/// Table names start with this, then the pid.
pub const TABLE_PREFIX: &str = "faultline_syn_";

/// What can go wrong with nft.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(
        "nft (nftables) is not installed: `apt-get install nftables` (Debian package \
         nftables); loadgen packets syn needs it to keep the host's RSTs off the wire"
    )]
    NftMissing,
    #[error("run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft {action} failed: {stderr}")]
    Failed { action: String, stderr: String },
}

/// One target's rule: drop RSTs to `target` from `ports` unless marked.
pub fn rule(target: IpAddr, ports: &RangeInclusive<u16>) -> String {
    let family = if target.is_ipv4() { "ip" } else { "ip6" };
    format!(
        "{family} daddr {target} tcp sport {}-{} tcp flags & rst == rst meta mark != {PROBE_MARK:#x} counter drop",
        ports.start(),
        ports.end()
    )
}

/// The whole `nft -f` script for a table.
pub fn script(table: &str, targets: &[IpAddr], ports: &RangeInclusive<u16>) -> String {
    let mut s = format!(
        "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"
    );
    for t in targets {
        s.push_str(&format!(
            "    {} comment \"faultline: keep the kernel's RSTs out of SYN probes\"\n",
            rule(*t, ports)
        ));
    }
    s.push_str("  }\n}\n");
    s
}

/// Tables named by [`TABLE_PREFIX`] in `nft list tables` output, with their pid.
pub fn our_tables(listing: &str) -> Vec<(String, u32)> {
    listing
        .lines()
        .filter_map(|l| {
            let name = l.trim().strip_prefix("table inet ")?;
            let pid = name
                .strip_prefix(TABLE_PREFIX)?
                .split('_')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), pid))
        })
        .collect()
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FirewallError::NftMissing,
        _ => FirewallError::Spawn(e),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if !out.status.success() {
        return Err(FirewallError::Failed {
            action: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Packets the rules' counters saw, summed, from `nft list table` output.
pub fn counted_packets(listing: &str) -> u64 {
    listing
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum()
}

/// Deletes tables left by runs whose process no longer exists (a SIGKILL).
fn remove_stale() {
    let Ok(listing) = nft(&["list", "tables"], None) else {
        return;
    };
    for (table, pid) in our_tables(&listing) {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match nft(&["delete", "table", "inet", &table], None) {
            Ok(_) => tracing::info!(table, pid, "removed a stale table of a dead run"),
            Err(e) => tracing::warn!(table, cause = %e, "could not remove a stale table"),
        }
    }
}

/// The installed table; removed on drop.
#[derive(Debug)]
pub struct Firewall {
    table: String,
    /// The rules, one per target, as installed.
    pub rules: Vec<String>,
    removed: bool,
}

static RUNS: AtomicU32 = AtomicU32::new(0);

impl Firewall {
    /// Installs the table for `targets` and `ports`.
    pub fn install(targets: &[IpAddr], ports: &RangeInclusive<u16>) -> Result<Self, FirewallError> {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let table = match run {
            0 => format!("{TABLE_PREFIX}{pid}"),
            n => format!("{TABLE_PREFIX}{pid}_{n}"),
        };
        remove_stale();
        let mut unique = targets.to_vec();
        unique.sort();
        unique.dedup();
        nft(&["-f", "-"], Some(&script(&table, &unique, ports)))?;
        tracing::debug!(table, "nft table installed");
        Ok(Self {
            rules: unique.iter().map(|t| rule(*t, ports)).collect(),
            table,
            removed: false,
        })
    }

    /// The table's name (`inet` family).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// How many RSTs of the kernel the rules dropped so far.
    pub fn dropped(&self) -> Option<u64> {
        nft(&["list", "table", "inet", &self.table], None)
            .ok()
            .map(|l| counted_packets(&l))
    }

    /// Removes the table now, reporting failure (drop only logs it).
    pub fn remove(&mut self) -> Result<(), FirewallError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        nft(&["delete", "table", "inet", &self.table], None).map(|_| ())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(table = self.table, cause = %e, "could not remove the nft table: `nft delete table inet {}`", self.table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matches_rsts_from_the_port_range() {
        let r = rule("127.0.0.1".parse().unwrap(), &(61000..=61999));
        assert_eq!(
            r,
            "ip daddr 127.0.0.1 tcp sport 61000-61999 tcp flags & rst == rst meta mark != 0xfa17001 counter drop"
        );
        assert!(rule("::1".parse().unwrap(), &(1..=2)).starts_with("ip6 daddr ::1 "));
        let s = script("t", &["10.0.0.1".parse().unwrap()], &(5..=6));
        assert!(s.starts_with("table inet t {"), "{s}");
        assert!(s.contains("hook output"), "{s}");
    }

    #[test]
    fn sums_rule_counters() {
        let l = "table inet t {\n chain output {\n  ip daddr 1.2.3.4 counter packets 3 bytes 120 drop\n  ip6 daddr ::1 counter packets 4 bytes 1 drop\n }\n}\n";
        assert_eq!(counted_packets(l), 7);
        assert_eq!(counted_packets(""), 0);
    }

    #[test]
    fn finds_our_tables_and_their_pids() {
        let t = our_tables(
            "table inet filter\ntable inet faultline_syn_42\ntable inet faultline_syn_7_2\ntable ip faultline_syn_9\ntable inet faultline_syn_x\n",
        );
        assert_eq!(
            t,
            [
                ("faultline_syn_42".into(), 42),
                ("faultline_syn_7_2".into(), 7)
            ]
        );
    }
}
