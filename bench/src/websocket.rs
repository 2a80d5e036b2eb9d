//! A WebSocket echo for the demo origin (RFC 6455): the handshake's
//! `Sec-WebSocket-Accept`, and a sans-I/O frame echo both origins drive:
//! text and binary frames come back unmasked with the same payload, pings
//! get pongs, a close gets a close.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest frame payload echoed (bytes); a larger one closes (1009).
const MAX_PAYLOAD: u64 = 1 << 20;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_value(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    STANDARD.encode(digest.as_ref())
}

/// Writes an unmasked server frame.
pub fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Echoes every complete frame in `input` (consumed) into `out`, and
/// appends the payload of each data frame (text, binary, continuation) to
/// `received`. Returns false when the connection should close (a close
/// frame, or a frame the echo refuses).
pub fn echo_frames(input: &mut Vec<u8>, out: &mut Vec<u8>, received: &mut Vec<Vec<u8>>) -> bool {
    loop {
        if input.len() < 2 {
            return true;
        }
        let opcode = input[0] & 0x0f;
        let masked = input[1] & 0x80 != 0;
        let (len, mut at) = match input[1] & 0x7f {
            126 if input.len() >= 4 => (u64::from(u16::from_be_bytes([input[2], input[3]])), 4),
            127 if input.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&input[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return true,
            n => (u64::from(n), 2),
        };
        // Client frames must be masked (RFC 6455 §5.1).
        if !masked || len > MAX_PAYLOAD {
            frame(out, 0x8, &[0x03, if masked { 0xf1 } else { 0xea }]);
            return false;
        }
        if input.len() < at + 4 + len as usize {
            return true;
        }
        let mask = [input[at], input[at + 1], input[at + 2], input[at + 3]];
        at += 4;
        let mut payload = input[at..at + len as usize].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        input.drain(..at + len as usize);
        match opcode {
            0x8 => {
                frame(out, 0x8, &payload[..payload.len().min(2)]);
                return false;
            }
            0x9 => frame(out, 0xA, &payload),
            0xA => {}
            op => {
                frame(out, op, &payload);
                received.push(payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frames_come_back_unmasked() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut input = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (mut out, mut received) = (Vec::new(), Vec::new());
        assert!(echo_frames(&mut input, &mut out, &mut received));
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(received, [b"Hello".to_vec()]);
        assert!(input.is_empty());
        // A partial frame waits for more.
        let mut input = vec![0x81, 0x85, 0x37];
        let (mut out, mut received) = (Vec::new(), Vec::new());
        assert!(echo_frames(&mut input, &mut out, &mut received));
        assert!(out.is_empty() && received.is_empty() && input.len() == 3);
    }
}
