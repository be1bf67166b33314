//! Lines in the CRI log format (kubelet's, and podman's `k8s-file` log driver):
//! `TIMESTAMP STREAM TAG MESSAGE`, e.g.
//! `2024-05-01T10:00:00.123456789+00:00 stdout F hello`.

/// The message of a CRI log line: what follows the timestamp, the stream and
/// the tag (`F` for a whole line, `P` for a part of a longer one, each part
/// being a line of its own in the file). A line not in that format is its own
/// message.
///
/// ```
/// use flotta_agent_lib::logs::cri_message;
/// assert_eq!(cri_message(b"2024-05-01T10:00:00.1+00:00 stderr F oops"), b"oops");
/// assert_eq!(cri_message(b"not a CRI line"), b"not a CRI line");
/// ```
pub fn cri_message(line: &[u8]) -> &[u8] {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let (Some(timestamp), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
    else {
        return line;
    };
    let known = timestamp.first().is_some_and(u8::is_ascii_digit)
        && matches!(stream, b"stdout" | b"stderr")
        && matches!(tag, b"F" | b"P");
    if !known {
        return line;
    }
    // An empty output line is written without the space after the tag.
    fields.next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_what_follows_timestamp_stream_and_tag() {
        let cases: [(&[u8], &[u8]); 7] = [
            (
                b"2024-05-01T10:00:00.123456789+00:00 stdout F hello world",
                b"hello world",
            ),
            (
                b"2024-05-01T10:00:00.1Z stderr F  two  spaces",
                b" two  spaces",
            ),
            (
                b"2024-05-01T10:00:00.1Z stdout P part of a long",
                b"part of a long",
            ),
            (b"2024-05-01T10:00:00.1Z stdout F", b""),
            (b"2024-05-01T10:00:00.1Z stdout F ", b""),
            (b"hello stdout F x", b"hello stdout F x"),
            (
                b"2024-05-01T10:00:00.1Z stdin F x",
                b"2024-05-01T10:00:00.1Z stdin F x",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(
                cri_message(line),
                message,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
