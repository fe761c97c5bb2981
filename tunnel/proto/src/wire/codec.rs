//! Byte-level reading and writing shared by every packet format: one
//! bounds-checked [`Reader`] over untrusted bytes, and append-only writers
//! over a caller's `Vec<u8>`. One byte order everywhere: fixed-width
//! integers are big-endian; variable-length integers are LEB128.

use thiserror::Error;

/// Why bytes could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The bytes ended inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint longer than 10 bytes or over 64 bits.
    #[error("malformed varint")]
    BadVarint,
}

/// A bounds-checked reader over untrusted bytes. Every read either returns
/// the value and advances, or fails without panicking.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Everything not yet read, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// The next `count` bytes.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8], CodecError> {
        if count > self.bytes.len() {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    /// The next `count` bytes, with a length read from the wire.
    pub fn take_u64(&mut self, count: u64) -> Result<&'a [u8], CodecError> {
        self.take(usize::try_from(count).map_err(|_| CodecError::Truncated)?)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let (&first, rest) = self.bytes.split_first().ok_or(CodecError::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A LEB128 varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            let part = u64::from(byte & 0x7f);
            if shift > 63 || (shift == 63 && part > 1) {
                return Err(CodecError::BadVarint);
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::BadVarint)
    }
}

/// Appends `value` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes [`put_varint`] uses for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Appends a big-endian `u16`.
pub fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a big-endian `u32`.
pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a big-endian `u64`.
pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(value in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            prop_assert_eq!(Reader::new(&out).varint().unwrap(), value);
        }

        #[test]
        fn fixed_round_trip(a in any::<u16>(), b in any::<u32>(), c in any::<u64>()) {
            let mut out = Vec::new();
            put_u16(&mut out, a);
            put_u32(&mut out, b);
            put_u64(&mut out, c);
            let mut reader = Reader::new(&out);
            prop_assert_eq!(reader.u16().unwrap(), a);
            prop_assert_eq!(reader.u32().unwrap(), b);
            prop_assert_eq!(reader.u64().unwrap(), c);
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn reads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), n in any::<u64>()) {
            let mut reader = Reader::new(&bytes);
            let _ = reader.varint();
            let _ = reader.take_u64(n);
            let _ = reader.u64();
            let _ = reader.array::<33>();
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(CodecError::BadVarint)
        );
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(Reader::new(&too_big).varint(), Err(CodecError::BadVarint));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(CodecError::Truncated));
    }
}
