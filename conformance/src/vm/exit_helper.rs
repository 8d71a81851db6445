//! A 200-byte static x86-64 program that reads one byte from stdin and writes it to I/O port
//! 0xf4, where qemu's `isa-debug-exit` device turns it into qemu's exit status
//! (`(byte << 1) | 1`).
//!
//! Why hand-made: Debian's kernels are built without `CONFIG_DEVPORT`, so the usual
//! `dd of=/dev/port` does not exist in the guest, busybox has no `outb`, and building a helper
//! at test time would need a C toolchain or a musl target. The machine code is:
//!
//! ```text
//! mov eax, 173 ; mov edi, 0xf4 ; mov esi, 1 ; mov edx, 1 ; syscall   ; ioperm(0xf4, 1, 1)
//! sub rsp, 16 ; xor eax, eax ; xor edi, edi ; mov rsi, rsp ; mov edx, 1 ; syscall ; read(0, sp, 1)
//! mov al, [rsp] ; mov dx, 0xf4 ; out dx, al                        ; qemu exits here
//! mov eax, 60 ; xor edi, edi ; syscall                              ; exit(0) otherwise
//! ```

const CODE: &[u8] = &[
    0xb8, 0xad, 0x00, 0x00, 0x00, // mov eax, 173 (ioperm)
    0xbf, 0xf4, 0x00, 0x00, 0x00, // mov edi, 0xf4
    0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1
    0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
    0x0f, 0x05, // syscall
    0x48, 0x83, 0xec, 0x10, // sub rsp, 16
    0x31, 0xc0, // xor eax, eax (read)
    0x31, 0xff, // xor edi, edi
    0x48, 0x89, 0xe6, // mov rsi, rsp
    0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
    0x0f, 0x05, // syscall
    0x8a, 0x04, 0x24, // mov al, [rsp]
    0x66, 0xba, 0xf4, 0x00, // mov dx, 0xf4
    0xee, // out dx, al
    0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
    0x31, 0xff, // xor edi, edi
    0x0f, 0x05, // syscall
];

const BASE: u64 = 0x40_0000;
const HEADERS: u64 = 64 + 56;

/// The ELF file.
pub(crate) fn elf() -> Vec<u8> {
    let size = HEADERS + CODE.len() as u64;
    let mut e = Vec::with_capacity(size as usize);
    // ELF header.
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV ABI
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers offset
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&64u16.to_le_bytes()); // header size
    e.extend_from_slice(&56u16.to_le_bytes()); // program header size
    e.extend_from_slice(&1u16.to_le_bytes()); // one program header
    e.extend_from_slice(&64u16.to_le_bytes()); // section header size
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    // PT_LOAD of the whole file, read + execute.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&size.to_le_bytes()); // file size
    e.extend_from_slice(&size.to_le_bytes()); // memory size
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // alignment
    e.extend_from_slice(CODE);
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_have_the_right_size_and_entry() {
        let e = super::elf();
        assert_eq!(e.len(), 120 + super::CODE.len());
        assert_eq!(&e[24..32], &(0x40_0000u64 + 120).to_le_bytes());
    }
}
