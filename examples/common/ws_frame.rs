//! WebSocket framing for the example clients (`hostile`, `ws_footprint`),
//! included with `#[path = "common/ws_frame.rs"]`.

/// A masked client frame: `first` (FIN, RSV and opcode) then `payload`,
/// masked with the fixed key `1, 2, 3, 4`.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}
