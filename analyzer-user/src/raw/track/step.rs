//! One segment applied to a followed connection: the kernel events its ends would
//! record (RFC 9293 section 3.6 for the close states; `tcp_reset()` for what an RST
//! delivers), and what the wire shows besides (zero windows, suspect RSTs).
use analyzer_common::EventKind;
use wire::packet::{Segment, TcpFlags};

use super::conn::{Ctx, Dir, EndRef, Flow, ends_mut, event, had_state, seq_lt, wire};
use crate::{
    event::{
        Observed,
        wire_fact::{WireEvent, WireFact},
    },
    names::TcpState,
};

/// ECONNREFUSED, ECONNRESET and EPIPE (asm-generic/errno.h), as `tcp_reset()` picks them.
const ECONNREFUSED: i32 = 111;
const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;

/// Applies one segment from direction `d` (0: client to server). Returns true when the
/// connection is over (both ends closed).
pub(super) fn step(
    flow: &mut Flow,
    d: usize,
    seg: &Segment<'_>,
    ctx: Ctx,
    out: &mut Vec<Observed>,
) -> bool {
    let syn = seg.has(TcpFlags::SYN);
    let ack = seg.has(TcpFlags::ACK);
    let rst = seg.has(TcpFlags::RST);
    let fin = seg.has(TcpFlags::FIN);
    let from_server = d == 1;
    let suspect = if rst {
        rst_suspect(&flow.dirs[d], seg, from_server)
    } else {
        None
    };
    note_ip(&mut flow.dirs[d], seg, rst);
    if !rst && !syn && seg.window == 0 {
        flow.dirs[d].zero_windows += 1;
        let count = flow.dirs[d].zero_windows;
        if count == 1 {
            out.push(wire(flow, ctx, WireFact::ZeroWindow { from_server, count }));
        }
    }
    let retransmit = note_seq(&mut flow.dirs[d], seg, syn) && !rst;
    let fin_acked = ack
        && flow.ends[1 - d]
            .fin_seq
            .is_some_and(|f| !seq_lt(seg.ack, f.wrapping_add(1)));
    let server_isn = flow.dirs[1].isn;
    let (mut me, mut peer) = ends_mut(&mut flow.ends, flow.client, flow.server, d);
    if rst {
        on_rst(&mut me, &mut peer, suspect, from_server, ctx, out);
        return true;
    }
    if syn {
        on_syn(&mut me, &mut peer, ack, retransmit, ctx, out);
        flow.dirs[d].isn = Some(seg.seq);
        return false;
    }
    // The handshake's last ACK: the server's child socket is created and established.
    if d == 0
        && peer.end.state == TcpState::NewSynRecv
        && server_isn.is_some_and(|i| seg.ack == i.wrapping_add(1))
    {
        // The child is cloned from the listener: the kernel reports LISTEN→SYN_RECV.
        peer.end.state = TcpState::Listen;
        peer.set(TcpState::SynRecv, ctx, out);
        peer.set(TcpState::Established, ctx, out);
    }
    on_data(
        &mut me,
        &mut peer,
        seg,
        (fin, fin_acked, retransmit),
        ctx,
        out,
    );
    let over = |s: TcpState| matches!(s, TcpState::Close | TcpState::Listen);
    over(flow.ends[0].state) && over(flow.ends[1].state)
}

/// Sequence bookkeeping of one direction; true when the segment is a retransmission (it
/// lies wholly below what was sent).
fn note_seq(dir: &mut Dir, seg: &Segment<'_>, syn: bool) -> bool {
    let end_seq = seg.seq.wrapping_add(seg.seq_len());
    let retransmit = seg.seq_len() > 0
        && dir
            .next_seq
            .is_some_and(|n| !(seq_lt(n, end_seq) || syn && dir.isn.is_none()));
    if dir.next_seq.is_none_or(|n| seq_lt(n, end_seq)) {
        dir.next_seq = Some(end_seq);
    }
    retransmit
}

/// An RST from `me`: its reset sent, `peer`'s reset received with the errno it gets, both
/// ends closed.
fn on_rst(
    me: &mut EndRef<'_>,
    peer: &mut EndRef<'_>,
    suspect: Option<WireFact>,
    from_server: bool,
    ctx: Ctx,
    out: &mut Vec<Observed>,
) {
    if let Some(fact) = suspect {
        out.push(Observed::Wire(WireEvent {
            ts_unix_ns: ctx.ts_unix_ns,
            skaddr: 0,
            client: if from_server { peer.local } else { me.local },
            server: if from_server { me.local } else { peer.local },
            fact,
        }));
    }
    // The sender's reset: a socket that existed, or the stack for no socket.
    if me.end.local {
        let had_socket = !matches!(me.end.state, TcpState::Listen | TcpState::Close);
        let mut ev = event(
            EventKind::SendReset,
            ctx,
            if had_socket { me.end.skaddr } else { 0 },
            me.local,
            me.remote,
            had_socket.then_some(me.end.state),
        );
        if !had_socket {
            ev.reason = Some("NO_SOCKET".into());
        }
        out.push(Observed::Kernel(ev));
    }
    if had_state(me.end.state) {
        me.close(ctx, out);
    } else {
        me.end.state = TcpState::Close;
    }
    // The receiver's side: reset in its state, the errno tcp_reset() delivers.
    if had_state(peer.end.state) {
        let state = peer.end.state;
        peer.emit(EventKind::ReceiveReset, ctx, out);
        let errno = match state {
            TcpState::SynSent => ECONNREFUSED,
            TcpState::CloseWait => EPIPE,
            _ => ECONNRESET,
        };
        if peer.end.local
            && !matches!(
                state,
                TcpState::TimeWait | TcpState::LastAck | TcpState::Closing
            )
        {
            let mut ev = event(
                EventKind::ErrorReport,
                ctx,
                peer.end.skaddr,
                peer.local,
                peer.remote,
                None,
            );
            ev.errno = Some(errno);
            out.push(Observed::Kernel(ev));
        }
        peer.close(ctx, out);
    }
}

/// A SYN (a connect, or its retransmission) or a SYN-ACK from `me`.
fn on_syn(
    me: &mut EndRef<'_>,
    peer: &mut EndRef<'_>,
    ack: bool,
    retransmit: bool,
    ctx: Ctx,
    out: &mut Vec<Observed>,
) {
    if !ack {
        if retransmit || me.end.state == TcpState::SynSent {
            me.emit(EventKind::Retransmit, ctx, out);
        } else {
            me.set(TcpState::SynSent, ctx, out);
        }
        return;
    }
    // SYN-ACK: the client is established when it arrives.
    if peer.end.state == TcpState::SynSent {
        peer.set(TcpState::Established, ctx, out);
    }
    if me.end.state == TcpState::Listen {
        me.end.state = TcpState::NewSynRecv;
    }
}

/// A segment of an open connection: retransmissions, FINs and their ACKs.
fn on_data(
    me: &mut EndRef<'_>,
    peer: &mut EndRef<'_>,
    seg: &Segment<'_>,
    (fin, fin_acked, retransmit): (bool, bool, bool),
    ctx: Ctx,
    out: &mut Vec<Observed>,
) {
    if retransmit && !fin {
        me.emit(EventKind::Retransmit, ctx, out);
    }
    // Our FIN acknowledged by the peer.
    if fin_acked {
        match peer.end.state {
            TcpState::FinWait1 => peer.set(TcpState::FinWait2, ctx, out),
            TcpState::LastAck | TcpState::Closing => peer.close(ctx, out),
            _ => {}
        }
    }
    if fin && me.end.fin_seq.is_none() {
        me.end.fin_seq = Some(
            seg.seq
                .wrapping_add(u32::try_from(seg.payload.len()).unwrap_or(0)),
        );
        match me.end.state {
            TcpState::Established | TcpState::SynRecv => me.set(TcpState::FinWait1, ctx, out),
            TcpState::CloseWait => me.set(TcpState::LastAck, ctx, out),
            _ => {}
        }
        match peer.end.state {
            TcpState::Established => peer.set(TcpState::CloseWait, ctx, out),
            TcpState::FinWait1 => peer.set(TcpState::Closing, ctx, out),
            // FIN_WAIT2 + FIN: TIME_WAIT, where the kernel closes the full socket.
            TcpState::FinWait2 => peer.close(ctx, out),
            _ => {}
        }
    } else if fin && retransmit {
        me.emit(EventKind::Retransmit, ctx, out);
    }
}

/// Remembers the sender's TTL and IP ID (not for RSTs, which are what is judged).
fn note_ip(dir: &mut Dir, seg: &Segment<'_>, rst: bool) {
    if rst {
        return;
    }
    match dir.ttl {
        None => dir.ttl = Some(seg.ttl),
        Some(t) if t != seg.ttl => dir.ttl_varies = true,
        Some(_) => {}
    }
    if seg.ip_id.is_some_and(|id| id != 0) {
        dir.last_ip_id = seg.ip_id;
    }
}

/// IP IDs further than this from the sender's last one do not come from its counter.
const IP_ID_JUMP: u16 = 4096;

/// Judges an RST against its sender's earlier packets on the connection.
fn rst_suspect(dir: &Dir, seg: &Segment<'_>, from_server: bool) -> Option<WireFact> {
    let expected_ttl = dir.ttl?;
    let mut why = Vec::new();
    if !dir.ttl_varies && seg.ttl != expected_ttl {
        why.push(format!(
            "TTL {} where every earlier packet from that end had {expected_ttl} (a different number of hops away)",
            seg.ttl
        ));
    }
    if let (Some(id), Some(last)) = (seg.ip_id, dir.last_ip_id)
        && id != 0
        && id.wrapping_sub(last) > IP_ID_JUMP
        && last.wrapping_sub(id) > IP_ID_JUMP
    {
        why.push(format!(
            "IP ID {id} far from that end's last {last} (not its counter)"
        ));
    }
    if why.is_empty() {
        return None;
    }
    Some(WireFact::RstSuspect {
        from_server,
        ttl: seg.ttl,
        expected_ttl,
        ip_id: seg.ip_id,
        last_ip_id: dir.last_ip_id,
        window: seg.window,
        why: why.join("; "),
    })
}
