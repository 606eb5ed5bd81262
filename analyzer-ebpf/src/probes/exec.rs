//! `sched:sched_process_exec`: which programs start, so that userspace can probe a Go
//! client's crypto/tls as soon as it is executed (`--tls-exe` names them beforehand).
//! Only when the plaintext capture is on (userspace fills [`EXEC_LAYOUT`]).
use analyzer_common::{EXEC_PATH_CAP, EXEC_RECORD_KIND, ExecLayout, ExecRecord, StatSlot};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{EVENTS, count};

/// Where the record keeps the file name; written by userspace before loading.
#[unsafe(no_mangle)]
static EXEC_LAYOUT: ExecLayout = ExecLayout {
    present: 0,
    filename_loc: 0,
};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    // SAFETY: a plain read of a static patched at load time (see `filter_u32`).
    let l: ExecLayout = unsafe { core::ptr::read_volatile(&EXEC_LAYOUT) };
    if l.present == 0 {
        return 0;
    }
    // SAFETY: the offset of the `__data_loc` word, from this tracepoint's format file.
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(l.filename_loc as usize) }) else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        count(StatSlot::ReserveFailed);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points to the reserved entry, written field by field before submit;
    // the string helper bounds the copy to the array and NUL-terminates it.
    unsafe {
        (*rec).ts_ns = bpf_ktime_get_ns();
        (*rec).pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        (*rec)._pad0 = 0;
        (*rec)._pad1 = [0; 3];
        (*rec).kind = EXEC_RECORD_KIND;
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        let n = generated::bpf_probe_read_kernel_str(
            (*rec).path.as_mut_ptr().cast(),
            EXEC_PATH_CAP as u32,
            src.cast(),
        );
        (*rec).len = if n > 0 { (n - 1) as u32 } else { 0 };
    }
    entry.submit(0);
    0
}
