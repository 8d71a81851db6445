//! Netlink attribute (TLV) writing: 4-byte aligned, nested, with nf_tables' big-endian integers
//! made explicit in the helper names.

/// `NLA_F_NESTED`: set on container attributes, as the kernel's strict validation expects.
const NLA_F_NESTED: u16 = 1 << 15;

/// A growing message buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

fn pad(n: usize) -> usize {
    (n + 3) & !3
}

impl Writer {
    /// One attribute with a raw payload.
    pub fn bytes(&mut self, kind: u16, payload: &[u8]) {
        self.parts(kind, &[payload]);
    }

    /// One attribute whose payload is `parts` one after another (no copy to join them).
    fn parts(&mut self, kind: u16, parts: &[&[u8]]) {
        let len = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
        self.buf.reserve(pad(len));
        self.buf
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.resize(self.buf.len() + pad(len) - len, 0);
    }

    /// A NUL-terminated string (written in place: a batch has one per chain, set, rule and
    /// expression name, and a copy each was a large part of encoding one).
    pub fn str(&mut self, kind: u16, s: &str) {
        self.parts(kind, &[s.as_bytes(), &[0]]);
    }

    /// A big-endian u32 (nf_tables' integer attributes).
    pub fn be32(&mut self, kind: u16, v: u32) {
        self.bytes(kind, &v.to_be_bytes());
    }

    /// A big-endian u64 (timeouts, handles).
    pub fn be64(&mut self, kind: u16, v: u64) {
        self.bytes(kind, &v.to_be_bytes());
    }

    /// A container attribute whose contents `f` writes.
    pub fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        f(self);
        let len = self.buf.len() - start;
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len16.to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested() {
        let mut w = Writer::default();
        w.str(1, "ab");
        assert_eq!(w.buf, [7, 0, 1, 0, b'a', b'b', 0, 0]);
        w.str(3, "abc");
        w.str(4, "");
        assert_eq!(
            w.buf[8..],
            [8, 0, 3, 0, b'a', b'b', b'c', 0, 5, 0, 4, 0, 0, 0, 0, 0]
        );
        let mut w = Writer::default();
        w.nest(2, |w| w.be32(1, 0x0102_0304));
        assert_eq!(w.buf, [12, 0, 2, 0x80, 8, 0, 1, 0, 1, 2, 3, 4]);
    }
}
