//! What the Matroska writer needs from H.264: the parameter sets of a
//! keyframe, the picture size from the SPS, and the `avcC` record
//! (ISO/IEC 14496-15 5.2.4.1) that is the track's CodecPrivate.
//!
//! Frames are stored as str0m's depacketizer gives them in AVC form (each NAL
//! unit behind a 4-byte big-endian length), parameter sets left in band.

pub(crate) const NAL_IDR: u8 = 5;
pub(crate) const NAL_SPS: u8 = 7;
pub(crate) const NAL_PPS: u8 = 8;

/// The NAL units of an AVC (length-prefixed) access unit; `None` if the
/// lengths do not add up.
pub(crate) fn nal_units(avc: &[u8]) -> Option<Vec<&[u8]>> {
    let mut units = Vec::new();
    let mut rest = avc;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let unit = rest.get(4..4 + len)?;
        if unit.is_empty() {
            return None;
        }
        units.push(unit);
        rest = &rest[4 + len..];
    }
    Some(units)
}

pub(crate) fn nal_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |b| b & 0x1F)
}

/// The `avcC` record for one SPS and one PPS, with 4-byte NAL lengths.
pub(crate) fn avcc(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if sps.len() < 4 || pps.is_empty() {
        return None;
    }
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut out = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
    out.extend_from_slice(&sps_len.to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&pps_len.to_be_bytes());
    out.extend_from_slice(pps);
    Some(out)
}

/// Width and height (after cropping) from an SPS NAL unit (ITU-T H.264 7.3.2.1.1).
pub(crate) fn sps_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    // Without emulation prevention bytes (00 00 03 -> 00 00).
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits {
        data: &rbsp,
        pos: 0,
    };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bits(1)?);
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    let (crop_x, crop_y) = match chroma_format {
        0 | 3 => (1, 2 - frame_mbs_only),
        1 => (2, 2 * (2 - frame_mbs_only)),
        _ => (2, 2 - frame_mbs_only),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub(crop_y * (top + bottom))?;
    let width = u16::try_from(width).ok().filter(|w| *w > 0)?;
    let height = u16::try_from(height).ok().filter(|h| *h > 0)?;
    Some((width, height))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_sps_gives_its_size() {
        // x264, constrained baseline, 320x240 (from `ffmpeg -f lavfi -i testsrc
        // -c:v libx264 -profile:v baseline`).
        let sps = [
            0x67, 0x42, 0xC0, 0x0C, 0xD9, 0x01, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
            0x10, 0x00, 0x00, 0x03, 0x01, 0xE0, 0xF1, 0x42, 0xA4, 0x80,
        ];
        assert_eq!(sps_dimensions(&sps), Some((320, 240)));
    }

    #[test]
    fn a_high_profile_sps_with_cropping_gives_its_size() {
        // x264, high profile, 318x180 (coded 320x192, cropped).
        let sps = [
            0x67, 0x64, 0x00, 0x0C, 0xAC, 0xB2, 0x02, 0x83, 0x3D, 0x4F, 0x80, 0x88, 0x00, 0x00,
            0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x00, 0xF0, 0x78, 0xA1, 0x52, 0x40,
        ];
        assert_eq!(sps_dimensions(&sps), Some((318, 180)));
    }

    #[test]
    fn truncated_parameter_sets_give_nothing() {
        assert_eq!(sps_dimensions(&[0x67, 0x42]), None);
        assert_eq!(sps_dimensions(&[]), None);
        assert_eq!(avcc(&[0x67], &[0x68]), None);
        assert_eq!(nal_units(&[0, 0, 0, 5, 1]), None);
    }
}
