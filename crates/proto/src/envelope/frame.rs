//! Length-prefixed framing for envelope messages on a byte stream (the SSH
//! channel's stdin and stdout). It bounds every length before allocating and
//! knows nothing about what a frame contains.

use std::io::{self, Read, Write};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
    /// The length prefix announces more than the caller accepts; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Caller's limit.
        max: usize,
    },
    /// The stream ended inside a frame (in the prefix or the body).
    #[error("stream ended inside a frame: got {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame (prefix or body) needed.
        expected: u64,
        /// Bytes that arrived.
        got: u64,
    },
}

/// Writes one frame: `body.len()` as a u32 big-endian, then `body`. Does not flush.
///
/// A body of 4 GiB or more cannot be framed and is an `InvalidInput` error.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame body of {} bytes does not fit a u32", body.len()),
        )
    })?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(body)
}

/// Reads one frame of at most `max` body bytes.
///
/// Returns `Ok(None)` when the stream ends cleanly before the first byte of a
/// frame, so a caller can tell "peer is done" from "peer died mid-message".
/// The body buffer is allocated only after the length is checked against `max`.
pub fn read_frame(r: &mut impl Read, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let got = read_full(r, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    if got < prefix.len() {
        return Err(FrameError::Truncated {
            expected: 4,
            got: got as u64,
        });
    }
    let len = u64::from(u32::from_be_bytes(prefix));
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    // `len <= max`, and `max` is a usize, so the conversion is exact.
    let mut body = vec![0u8; len as usize];
    let got = read_full(r, &mut body)?;
    if got < body.len() {
        return Err(FrameError::Truncated {
            expected: len,
            got: got as u64,
        });
    }
    Ok(Some(body))
}

/// Fills `buf` as far as the stream allows; returns how many bytes arrived
/// (less than `buf.len()` only at end of stream).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_clean_eof_is_none() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").expect("writing to a Vec");
        write_frame(&mut wire, b"").expect("writing to a Vec");
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r, 16).expect("first").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            read_frame(&mut r, 16).expect("second").as_deref(),
            Some(&b""[..])
        );
        assert!(read_frame(&mut r, 16).expect("eof").is_none());
    }

    #[test]
    fn oversized_length_is_rejected_before_the_body_is_read() {
        // Claims 4 GiB - 1 with no body behind it: must fail on the length alone.
        let mut r = &[0xff, 0xff, 0xff, 0xff][..];
        match read_frame(&mut r, 1024) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"abcdef").expect("writing to a Vec");
        for cut in 1..wire.len() {
            let mut r = &wire[..cut];
            assert!(
                matches!(read_frame(&mut r, 64), Err(FrameError::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }
}
