//! Synthetic VP8 and Opus payloads that say which frame they are, for the sfu's simulation: a
//! VP8 frame looks like one to the SFU (frame tag, keyframe start code and size), the rest is
//! deterministic noise, so every frame differs and a receiver can match it byte for byte with
//! what was sent. A simulcast frame also carries its layer and picture number.

/// A synthetic VP8 frame: a keyframe has the frame-type bit clear, the start
/// code 9d 01 2a and a size; an interframe has the bit set. The rest is
/// deterministic noise keyed by `salt` and `seq`, so every frame differs.
pub fn vp8_frame(key: bool, salt: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let first_part = (len as u32).saturating_sub(10).min(0x7_ffff);
    // bit0: 0 = key frame; bits 1-3: version 0; bit 4: show_frame; 5-23: size.
    let tag = u32::from(!key) | (1 << 4) | (first_part << 5);
    v.extend_from_slice(&tag.to_le_bytes()[..3]);
    if key {
        v.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&640u16.to_le_bytes());
        v.extend_from_slice(&480u16.to_le_bytes());
    }
    v.push(salt);
    v.extend_from_slice(&seq.to_be_bytes());
    noise(&mut v, len, u64::from(salt) << 32 | u64::from(seq));
    v
}

pub fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// An "Opus" payload: the SFU never looks inside.
pub fn opus_frame(salt: u8, seq: u32) -> Vec<u8> {
    let len = 40 + (seq as usize * 37) % 90;
    let mut v = vec![0x78, salt];
    v.extend_from_slice(&seq.to_be_bytes());
    noise(
        &mut v,
        len,
        0xa0d1_0000_0000 | u64::from(salt) << 32 | u64::from(seq),
    );
    v
}

fn noise(v: &mut Vec<u8>, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
}

/// A simulcast frame: `vp8_frame` whose salt byte says the layer (0xa0 |
/// index, lowest first) and whose sequence number is the frame number (the
/// same on every layer for the same picture).
pub fn layer_frame(key: bool, layer: u8, frame: u32, len: usize) -> Vec<u8> {
    vp8_frame(key, 0xa0 | layer, frame, len)
}

/// The (layer index, frame number) a `layer_frame` carries.
pub fn frame_layer(frame: &[u8]) -> Option<(u8, u32)> {
    let at = if is_vp8_keyframe(frame) { 10 } else { 3 };
    let tag = *frame.get(at)?;
    if tag & 0xf0 != 0xa0 {
        return None;
    }
    let n = frame.get(at + 1..at + 5)?;
    Some((tag & 0x0f, u32::from_be_bytes([n[0], n[1], n[2], n[3]])))
}

/// The sequence number an `opus_frame` carries.
pub fn audio_seq(frame: &[u8]) -> Option<u32> {
    let n = frame.get(2..6)?;
    Some(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
}
