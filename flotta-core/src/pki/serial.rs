//! Certificate serial numbers.

use std::fmt;

use super::error::PkiError;

/// A certificate serial number, as a positive big-endian integer without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A serial from big-endian bytes; leading zero bytes are dropped so that the same
    /// number always compares equal.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Self(bytes.get(start..).unwrap_or_default().to_vec())
    }

    /// A fresh random 128-bit serial from the system's random generator.
    pub fn random() -> Result<Self, PkiError> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
        // Fix the top bit so every serial is exactly 128 bits long (127 random bits);
        // DER then adds a zero byte to keep it positive.
        bytes[0] |= 0x80;
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian magnitude.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("00");
        }
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalises_leading_zeros() {
        assert_eq!(
            Serial::from_bytes(&[0, 0, 1, 2]),
            Serial::from_bytes(&[1, 2])
        );
        assert_eq!(Serial::from_bytes(&[0, 0xab]).to_string(), "ab");
        assert_eq!(Serial::from_bytes(&[]).to_string(), "00");
    }

    #[test]
    fn random_serials_are_128_bits_and_differ() {
        let a = Serial::random().expect("rng");
        let b = Serial::random().expect("rng");
        assert_eq!(a.as_bytes().len(), 16);
        assert_ne!(a, b);
    }
}
