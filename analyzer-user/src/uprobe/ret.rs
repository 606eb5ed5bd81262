//! The return instructions of a function body, found by decoding it instruction by
//! instruction from the entry: Go code gets a uprobe on each of them instead of a
//! uretprobe (a uretprobe rewrites the return address on the stack, which breaks when
//! the Go runtime moves or grows the goroutine's stack).
//!
//! Never a byte scan for `0xc3`: that byte also occurs inside immediates, displacements
//! and ModRM bytes of other instructions, and a uprobe there would corrupt the
//! instruction it lands in.
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use object::Architecture;
use thiserror::Error;

/// Why the returns of a function could not be listed.
#[derive(Debug, Error)]
pub enum RetError {
    #[error(
        "unsupported architecture {0:?}: return instructions are found by decoding x86-64 only"
    )]
    UnsupportedArchitecture(Architecture),
    #[error("no valid instruction at {vaddr:#x} (bytes {bytes:02x?})")]
    Invalid { vaddr: u64, bytes: Vec<u8> },
}

/// The virtual address of every near return (`RET`, `RET imm16`) in `code`, the bytes of
/// one function whose first byte is at `entry`. `code` must end on an instruction
/// boundary, as a function's bytes do (Go pads between functions with whole `INT3`s).
pub fn return_addresses(arch: Architecture, code: &[u8], entry: u64) -> Result<Vec<u64>, RetError> {
    if arch != Architecture::X86_64 {
        return Err(RetError::UnsupportedArchitecture(arch));
    }
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            let at = (insn.ip() - entry) as usize;
            let bytes = code[at..].iter().take(15).copied().collect();
            return Err(RetError::Invalid {
                vaddr: insn.ip(),
                bytes,
            });
        }
        if insn.mnemonic() == Mnemonic::Ret {
            out.push(insn.ip());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c3_inside_an_immediate_is_not_a_return() {
        let code = [
            0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax, 0xc3
            0x48, 0x8b, 0x5c, 0x24, 0xc3, // mov rbx, [rsp-0x3d]
            0xc3, // ret
            0xc2, 0x08, 0x00, // ret 8
            0xcb, // retf: not a near return
            0xcc, 0xcc, // int3 padding
        ];
        let rets = return_addresses(Architecture::X86_64, &code, 0x1000).unwrap();
        assert_eq!(rets, [0x100a, 0x100b]);
    }

    #[test]
    fn go_prologue_and_epilogue() {
        // From Go 1.19's crypto/tls.(*Conn).Read: CMPQ 0x10(R14), SP; JBE; SUBQ $0x68, SP;
        // ... ADDQ $0x68, SP; RET.
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xc2, 0x03, 0x00, 0x00, 0x48, 0x83, 0xec, 0x68,
            0x48, 0x83, 0xc4, 0x68, 0xc3,
        ];
        let rets = return_addresses(Architecture::X86_64, &code, 0x58_4d40).unwrap();
        assert_eq!(rets, [0x58_4d52]);
    }

    #[test]
    fn a_cut_instruction_or_another_architecture_is_an_error() {
        let code = [0x48, 0x8b]; // the first two bytes of a mov
        assert!(matches!(
            return_addresses(Architecture::X86_64, &code, 0x2000),
            Err(RetError::Invalid { vaddr: 0x2000, .. })
        ));
        assert!(matches!(
            return_addresses(Architecture::Aarch64, &[0xc0, 0x03, 0x5f, 0xd6], 0),
            Err(RetError::UnsupportedArchitecture(Architecture::Aarch64))
        ));
    }
}
