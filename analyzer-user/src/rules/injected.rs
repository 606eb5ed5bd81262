//! `rst_possibly_injected`: an RST the peer's stack did not send, told from the wire
//! (its TTL or IP ID misfits its sender's other packets) or from the kernel (a server on
//! this host whose sockets sent no RST for the connection).
use events::model::Class;

use super::{Case, Confidence, Evidence, Level, Verdict, conn_label, kernel_summary};
use crate::{event::wire_fact::WireFact, names::TcpState, table::Role};

/// An RST the peer's stack did not send: likely forged by a middlebox (firewall, IDS,
/// load balancer). From the wire: its TTL or IP ID does not fit the packets its sender
/// sent before. From the kernel: the server is on this host, and none of this host's
/// sockets sent it.
pub fn rst_possibly_injected(case: &Case<'_>) -> Option<Verdict> {
    rst_ttl_misfit(case).or_else(|| rst_sent_by_no_local_socket(case))
}

/// The raw backend's view: the RST's TTL or IP ID does not fit its sender's packets.
fn rst_ttl_misfit(case: &Case<'_>) -> Option<Verdict> {
    let k = case.kernel?;
    let (ttl, expected, why, from_server) = k.wire.iter().find_map(|f| match f {
        WireFact::RstSuspect {
            ttl,
            expected_ttl,
            why,
            from_server,
            ..
        } => Some((*ttl, *expected_ttl, why.clone(), *from_server)),
        _ => None,
    })?;
    let ts = k.facts.rst_received_unix_ns.unwrap_or(k.last_unix_ns);
    let mut evidence = vec![Evidence::wire(
        ts,
        format!(
            "RST from the {} end: {why}",
            if from_server { "server" } else { "client" }
        ),
    )];
    evidence.extend(case.request_evidence());
    evidence.extend(kernel_summary(k));
    Some(injected(
        format!(
            "the RST's TTL {ttl} differs from the {expected} of every earlier packet from that end"
        ),
        evidence,
        "a middlebox on the path (firewall, IDS, load balancer, NAT with a short idle timeout) forged the reset: find which device sits that many hops away and check its session timeouts and rules",
    ))
}

/// The `rst_possibly_injected` verdict (always medium: the evidence is an absence or a
/// misfit, not the forger itself) with the why, evidence and hint of one backend.
fn injected(why: String, evidence: Vec<Evidence>, hint: &str) -> Verdict {
    Verdict {
        cause: "rst_possibly_injected",
        detail: None,
        title: "connection reset by an RST that did not come from the peer's stack".into(),
        confidence: Confidence::new(Level::Medium, why),
        evidence,
        hint: hint.into(),
    }
}

/// An RST received in an established connection to a server on this host, when every
/// RST this host's sockets send is recorded (`RuleOptions::local_resets_recorded`) and
/// the server's socket was open and traced when it came (`rst_peer_traced`), yet neither
/// that socket nor this host's stack for that 4-tuple sent one: something between the
/// two sockets forged it (an nft/iptables `reject with tcp-reset` rule, an IDS, a tool
/// writing raw packets).
fn rst_sent_by_no_local_socket(case: &Case<'_>) -> Option<Verdict> {
    if !case.opts.local_resets_recorded
        || !(case.kernel_decides() || case.class() == Some(Class::TcpReset))
    {
        return None;
    }
    let k = case.kernel.filter(|k| k.role == Role::Client)?;
    let f = &k.facts;
    let t = f.rst_received_unix_ns?;
    let sent_locally = f.peer_rst_sent.is_some() || case.peer.is_some_and(|p| p.facts.rst_sent > 0);
    if !f.rst_peer_traced || sent_locally || f.rst_state == Some(TcpState::SynSent) {
        return None;
    }
    let state = f.rst_state.map_or("?", TcpState::as_str);
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    evidence.push(Evidence::kernel(
        t,
        format!("RST received in {state} on {}", conn_label(k)),
    ));
    evidence.push(Evidence::kernel(
        t,
        "the server's socket on this host was open and traced, and tcp_send_reset recorded no RST from it or from this host's stack for the connection".to_owned(),
    ));
    Some(injected(
        "the server is on this host, every RST its sockets send is recorded, and none matched this one".into(),
        evidence,
        "something between the two sockets on this host forged the reset: a firewall rule (`nft list ruleset`, `iptables -S`: `reject with tcp reset`), an IDS, or a tool writing raw packets",
    ))
}
