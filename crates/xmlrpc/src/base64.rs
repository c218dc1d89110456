//! `base64.encodebytes` and a non-strict `binascii.a2b_base64`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `base64.encodebytes(data)`: lines of at most 76 characters (57 input
/// bytes), each ending in `\n`; nothing for empty input.
pub(crate) fn encodebytes(data: &[u8], out: &mut Vec<u8>) {
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            out.push(ALPHABET[(n >> 18) as usize & 63]);
            out.push(ALPHABET[(n >> 12) as usize & 63]);
            out.push(if c.len() > 1 {
                ALPHABET[(n >> 6) as usize & 63]
            } else {
                b'='
            });
            out.push(if c.len() > 2 {
                ALPHABET[n as usize & 63]
            } else {
                b'='
            });
        }
        out.push(b'\n');
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// `binascii.a2b_base64(data)` (non-strict, as `base64.decodebytes`):
/// characters outside the alphabet are skipped; `Err` carries CPython's
/// `binascii.Error` message.
pub(crate) fn decodebytes(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut quad_pos = 0u32;
    let mut left = 0u32;
    let mut pads = 0u32;
    let mut data_chars = 0usize;
    for &c in data {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        pads = 0;
        data_chars += 1;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push(((left << 2) | (v >> 4)) as u8);
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push(((left << 4) | (v >> 2)) as u8);
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push(((left << 6) | v) as u8);
                left = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err(format!(
            "Invalid base64-encoded string: number of data characters ({data_chars}) cannot be 1 more than a multiple of 4"
        )),
        _ => Err("Incorrect padding".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_length() {
        for n in [0usize, 1, 2, 3, 56, 57, 58, 200] {
            let data: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            let mut enc = Vec::new();
            encodebytes(&data, &mut enc);
            assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 76));
            assert_eq!(decodebytes(&enc).unwrap(), data);
        }
        assert_eq!(decodebytes(b"aGk").unwrap_err(), "Incorrect padding");
        assert!(decodebytes(b"a")
            .unwrap_err()
            .contains("(1) cannot be 1 more"));
        assert_eq!(decodebytes(b" aG\nk= ").unwrap(), b"hi");
    }
}
