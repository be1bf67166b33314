//! PEM framing of DER: encoding one block, reading one block or plain DER, and
//! reading a bundle of `CERTIFICATE` blocks.

/// Encodes DER as one PEM block with 64-character lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                b64.push(char::from(ALPHABET[index]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes PEM (one block with one of the given labels) or passes DER through.
///
/// Returns `None` when the input looks like PEM but is not one well-formed block with
/// an accepted label, optionally followed by whitespace.
pub(crate) fn pem_or_der<'a>(
    input: &'a [u8],
    labels: &[&str],
) -> Option<std::borrow::Cow<'a, [u8]>> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (rest, pem) = x509_parser::pem::parse_x509_pem(trimmed).ok()?;
        if !labels.contains(&pem.label.as_str()) || !rest.trim_ascii().is_empty() {
            return None;
        }
        Some(std::borrow::Cow::Owned(pem.contents))
    } else {
        Some(std::borrow::Cow::Borrowed(input))
    }
}

/// Reads every `CERTIFICATE` block of a PEM bundle, in order, at most `max` of them.
///
/// Returns `None` when a block is malformed, has another label, or there are more
/// than `max`; text between blocks is not allowed except whitespace.
pub(crate) fn certificate_bundle(input: &[u8], max: usize) -> Option<Vec<Vec<u8>>> {
    let mut rest = input.trim_ascii();
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        if blocks.len() == max {
            return None;
        }
        let (after, pem) = x509_parser::pem::parse_x509_pem(rest).ok()?;
        if pem.label != "CERTIFICATE" {
            return None;
        }
        blocks.push(pem.contents);
        rest = after.trim_ascii();
    }
    Some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_encoding_matches_known_base64() {
        let pem = pem_encode("X", b"foobar!");
        assert_eq!(pem, "-----BEGIN X-----\nZm9vYmFyIQ==\n-----END X-----\n");
        let pem = pem_encode("X", b"fo");
        assert!(pem.contains("\nZm8=\n"));
    }

    #[test]
    fn pem_or_der_reads_one_block_or_passes_der() {
        let pem = pem_encode("CERTIFICATE", b"der bytes");
        assert_eq!(
            pem_or_der(pem.as_bytes(), &["CERTIFICATE"]).as_deref(),
            Some(&b"der bytes"[..])
        );
        assert_eq!(pem_or_der(pem.as_bytes(), &["CERTIFICATE REQUEST"]), None);
        assert_eq!(
            pem_or_der(b"\x30\x01", &["CERTIFICATE"]).as_deref(),
            Some(&b"\x30\x01"[..])
        );
    }

    #[test]
    fn certificate_bundle_reads_blocks_in_order_within_the_limit() {
        let bundle = pem_encode("CERTIFICATE", b"one") + &pem_encode("CERTIFICATE", b"two");
        assert_eq!(
            certificate_bundle(bundle.as_bytes(), 4),
            Some(vec![b"one".to_vec(), b"two".to_vec()])
        );
        assert_eq!(certificate_bundle(bundle.as_bytes(), 1), None);
        let mixed = bundle + &pem_encode("PRIVATE KEY", b"key");
        assert_eq!(certificate_bundle(mixed.as_bytes(), 4), None);
        assert_eq!(certificate_bundle(b"garbage", 4), None);
    }
}
