//! The value encodings of the prediction log's Parquet files (see [`super::parquet`]):
//! definition levels, the RLE/bit-packed hybrid (levels and dictionary indices) and
//! `BYTE_STREAM_SPLIT` floats.

use super::thrift::varint;

/// Definition levels (1 present, 0 null) as a v1 page holds them: a 4-byte length, then the
/// RLE/bit-packed hybrid at bit width 1.
pub(super) fn levels(out: &mut Vec<u8>, valid: &[bool], nulls: usize) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if nulls == 0 {
        // One run of ones (the common case: nothing missing).
        if !valid.is_empty() {
            varint(out, (valid.len() as u64) << 1);
            out.push(1);
        }
    } else {
        let v: Vec<u32> = valid.iter().map(|b| u32::from(*b)).collect();
        rle_hybrid(out, &v, 1);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Bits needed for `max`.
pub(super) fn bit_width(max: u64) -> u32 {
    64 - max.leading_zeros()
}

/// The RLE/bit-packed hybrid encoding of `values` at `width` bits (without a length): runs of
/// 8 or more equal values as RLE runs, the rest bit-packed in groups of 8 (the last group
/// padded with zeros, which readers ignore past the page's value count).
pub(super) fn rle_hybrid(out: &mut Vec<u8>, values: &[u32], width: u32) {
    let run_at = |i: usize| {
        let v = values[i];
        values[i..].iter().take_while(|x| **x == v).count()
    };
    let value_bytes = width.div_ceil(8) as usize;
    let mut i = 0;
    while i < values.len() {
        let run = run_at(i);
        if run >= 8 {
            varint(out, (run as u64) << 1);
            out.extend_from_slice(&values[i].to_le_bytes()[..value_bytes]);
            i += run;
            continue;
        }
        // Literal groups of 8 until a long run starts at a group boundary, or the end.
        let start = i;
        let mut groups = 0u64;
        loop {
            i += 8;
            groups += 1;
            if i >= values.len() || run_at(i) >= 8 {
                break;
            }
        }
        varint(out, (groups << 1) | 1);
        let end = i.min(values.len());
        bit_pack(out, &values[start..end], width, groups as usize * 8);
    }
}

/// `values` packed LSB first at `width` bits each, padded with zeros to `count` values.
pub(super) fn bit_pack(out: &mut Vec<u8>, values: &[u32], width: u32, count: usize) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for k in 0..count {
        let v = values.get(k).copied().unwrap_or(0);
        acc |= u64::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Floats as BYTE_STREAM_SPLIT values: the first byte of every value, then the second, …
/// (each value little-endian). Four values at a time are transposed in registers (two rounds
/// of masked swaps) and written to the four streams as words: ~8 instructions a value, where
/// a pass over the values per stream took ~36 for doubles.
pub(super) fn byte_stream_split_f32(out: &mut Vec<u8>, v: &[f32]) {
    fn swap(a: u32, b: u32, shift: u32, mask: u32) -> (u32, u32) {
        let t = ((a >> shift) ^ b) & mask;
        (a ^ (t << shift), b ^ t)
    }
    let at = out.len();
    let n = v.len();
    out.resize(at + 4 * n, 0);
    let (s0, rest) = out[at..].split_at_mut(n);
    let (s1, rest) = rest.split_at_mut(n);
    let (s2, s3) = rest.split_at_mut(n);
    let streams = s0
        .chunks_exact_mut(4)
        .zip(s1.chunks_exact_mut(4))
        .zip(s2.chunks_exact_mut(4))
        .zip(s3.chunks_exact_mut(4));
    for (x, (((d0, d1), d2), d3)) in v.chunks_exact(4).zip(streams) {
        // Row i holds value i's bytes; after the swaps, row k holds byte k of each value.
        let (r0, r2) = swap(x[0].to_bits(), x[2].to_bits(), 16, 0xFFFF);
        let (r1, r3) = swap(x[1].to_bits(), x[3].to_bits(), 16, 0xFFFF);
        let (r0, r1) = swap(r0, r1, 8, 0x00FF_00FF);
        let (r2, r3) = swap(r2, r3, 8, 0x00FF_00FF);
        d0.copy_from_slice(&r0.to_le_bytes());
        d1.copy_from_slice(&r1.to_le_bytes());
        d2.copy_from_slice(&r2.to_le_bytes());
        d3.copy_from_slice(&r3.to_le_bytes());
    }
    let o = &mut out[at..];
    for (i, x) in v.iter().enumerate().skip(n / 4 * 4) {
        for (k, b) in x.to_le_bytes().into_iter().enumerate() {
            o[k * n + i] = b;
        }
    }
}

/// [`byte_stream_split_f32`] for doubles: eight values at a time, three rounds of swaps
/// (~17 instructions a value).
pub(super) fn byte_stream_split_f64(out: &mut Vec<u8>, v: &[f64]) {
    fn swap(a: u64, b: u64, shift: u32, mask: u64) -> (u64, u64) {
        let t = ((a >> shift) ^ b) & mask;
        (a ^ (t << shift), b ^ t)
    }
    let at = out.len();
    let n = v.len();
    out.resize(at + 8 * n, 0);
    let (s0, rest) = out[at..].split_at_mut(n);
    let (s1, rest) = rest.split_at_mut(n);
    let (s2, rest) = rest.split_at_mut(n);
    let (s3, rest) = rest.split_at_mut(n);
    let (s4, rest) = rest.split_at_mut(n);
    let (s5, rest) = rest.split_at_mut(n);
    let (s6, s7) = rest.split_at_mut(n);
    let streams = s0
        .chunks_exact_mut(8)
        .zip(s1.chunks_exact_mut(8))
        .zip(s2.chunks_exact_mut(8))
        .zip(s3.chunks_exact_mut(8))
        .zip(s4.chunks_exact_mut(8))
        .zip(s5.chunks_exact_mut(8))
        .zip(s6.chunks_exact_mut(8))
        .zip(s7.chunks_exact_mut(8));
    for (x, (((((((d0, d1), d2), d3), d4), d5), d6), d7)) in v.chunks_exact(8).zip(streams) {
        const HALVES: u64 = 0xFFFF_FFFF;
        const QUARTERS: u64 = 0x0000_FFFF_0000_FFFF;
        const BYTES: u64 = 0x00FF_00FF_00FF_00FF;
        let (r0, r4) = swap(x[0].to_bits(), x[4].to_bits(), 32, HALVES);
        let (r1, r5) = swap(x[1].to_bits(), x[5].to_bits(), 32, HALVES);
        let (r2, r6) = swap(x[2].to_bits(), x[6].to_bits(), 32, HALVES);
        let (r3, r7) = swap(x[3].to_bits(), x[7].to_bits(), 32, HALVES);
        let (r0, r2) = swap(r0, r2, 16, QUARTERS);
        let (r1, r3) = swap(r1, r3, 16, QUARTERS);
        let (r4, r6) = swap(r4, r6, 16, QUARTERS);
        let (r5, r7) = swap(r5, r7, 16, QUARTERS);
        let (r0, r1) = swap(r0, r1, 8, BYTES);
        let (r2, r3) = swap(r2, r3, 8, BYTES);
        let (r4, r5) = swap(r4, r5, 8, BYTES);
        let (r6, r7) = swap(r6, r7, 8, BYTES);
        for (d, r) in [d0, d1, d2, d3, d4, d5, d6, d7]
            .into_iter()
            .zip([r0, r1, r2, r3, r4, r5, r6, r7])
        {
            d.copy_from_slice(&r.to_le_bytes());
        }
    }
    let o = &mut out[at..];
    for (i, x) in v.iter().enumerate().skip(n / 8 * 8) {
        for (k, b) in x.to_le_bytes().into_iter().enumerate() {
            o[k * n + i] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the RLE/bit-packed hybrid (the reader's side), `n` values.
    fn decode(mut b: &[u8], width: u32, n: usize) -> Vec<u32> {
        let mut out = vec![];
        let varint = |b: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let x = b[0];
                *b = &b[1..];
                v |= u64::from(x & 0x7f) << shift;
                shift += 7;
                if x < 0x80 {
                    return v;
                }
            }
        };
        while out.len() < n {
            let h = varint(&mut b);
            if h & 1 == 0 {
                let k = width.div_ceil(8) as usize;
                let mut v = [0u8; 4];
                v[..k].copy_from_slice(&b[..k]);
                b = &b[k..];
                out.extend(std::iter::repeat_n(
                    u32::from_le_bytes(v),
                    (h >> 1) as usize,
                ));
            } else {
                let count = (h >> 1) as usize * 8;
                let bytes = count * width as usize / 8;
                let (mut acc, mut bits, mut at) = (0u64, 0u32, 0);
                for _ in 0..count {
                    while bits < width {
                        acc |= u64::from(b[at]) << bits;
                        at += 1;
                        bits += 8;
                    }
                    out.push((acc & ((1u64 << width) - 1)) as u32);
                    acc >>= width;
                    bits -= width;
                }
                b = &b[bytes..];
            }
        }
        assert!(b.is_empty(), "{} bytes left", b.len());
        out.truncate(n);
        out
    }

    #[test]
    fn the_rle_hybrid_round_trips_runs_literals_and_mixtures() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for width in [1, 2, 3, 7, 8, 9, 13, 16, 17, 32] {
            let max = if width == 32 {
                u32::MAX
            } else {
                (1 << width) - 1
            };
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000] {
                // Random values, long runs, and runs broken by single values.
                let random: Vec<u32> = (0..n).map(|_| next() & max).collect();
                let runs: Vec<u32> = (0..n).map(|i| ((i / 13) as u32) & max).collect();
                let mixed: Vec<u32> = (0..n)
                    .map(|i| if i % 11 == 5 { next() & max } else { max })
                    .collect();
                for values in [random, runs, mixed] {
                    let mut out = vec![];
                    rle_hybrid(&mut out, &values, width);
                    assert_eq!(decode(&out, width, n), values, "width {width}, n {n}");
                }
            }
        }
    }

    #[test]
    fn one_value_throughout_is_one_run() {
        let mut out = vec![];
        rle_hybrid(&mut out, &[3; 10_000], 2);
        assert_eq!(out, [0xa0, 0x9c, 0x01, 3]);
    }

    /// Byte `k` of value `i` at `k * n + i`, the definition, one byte at a time.
    fn split_by_definition(values: &[[u8; 8]], width: usize) -> Vec<u8> {
        let n = values.len();
        let mut out = vec![0; width * n];
        for (i, v) in values.iter().enumerate() {
            for k in 0..width {
                out[k * n + i] = v[k];
            }
        }
        out
    }

    #[test]
    fn byte_stream_split_puts_byte_k_of_value_i_at_k_n_plus_i() {
        let specials = [
            0.0,
            -0.0,
            1.5,
            -2.25e-30,
            f64::INFINITY,
            f64::NAN,
            f64::MIN,
            3.0e300,
        ];
        for n in [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 1000] {
            let doubles: Vec<f64> = (0..n)
                .map(|i| specials[i % 8] + (i as f64) * 0.123_456_789)
                .collect();
            let floats: Vec<f32> = doubles.iter().map(|&x| x as f32 * 1.000_1).collect();
            let mut out = vec![9, 9];
            byte_stream_split_f64(&mut out, &doubles);
            let bytes: Vec<[u8; 8]> = doubles.iter().map(|x| x.to_le_bytes()).collect();
            assert_eq!(out[..2], [9, 9]);
            assert_eq!(out[2..], split_by_definition(&bytes, 8), "doubles, n {n}");
            let mut out = vec![];
            byte_stream_split_f32(&mut out, &floats);
            let bytes: Vec<[u8; 8]> = floats
                .iter()
                .map(|x| {
                    let mut b = [0; 8];
                    b[..4].copy_from_slice(&x.to_le_bytes());
                    b
                })
                .collect();
            assert_eq!(out, split_by_definition(&bytes, 4), "floats, n {n}");
        }
    }
}
