//! OIP datatypes as they travel on the wire, which of them convert to which model element
//! type, and the bulk decoding of binary tensor data (little-endian, row-major).

use kiln_ml::{ElemType, TensorData};

/// Every datatype the Open Inference Protocol (plus Triton's BF16) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
    Bytes,
}

impl Wire {
    pub(crate) fn parse(s: &str) -> Option<Wire> {
        Some(match s {
            "BOOL" => Wire::Bool,
            "UINT8" => Wire::U8,
            "UINT16" => Wire::U16,
            "UINT32" => Wire::U32,
            "UINT64" => Wire::U64,
            "INT8" => Wire::I8,
            "INT16" => Wire::I16,
            "INT32" => Wire::I32,
            "INT64" => Wire::I64,
            "FP16" => Wire::F16,
            "BF16" => Wire::Bf16,
            "FP32" => Wire::F32,
            "FP64" => Wire::F64,
            "BYTES" => Wire::Bytes,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Wire::Bool => "BOOL",
            Wire::U8 => "UINT8",
            Wire::U16 => "UINT16",
            Wire::U32 => "UINT32",
            Wire::U64 => "UINT64",
            Wire::I8 => "INT8",
            Wire::I16 => "INT16",
            Wire::I32 => "INT32",
            Wire::I64 => "INT64",
            Wire::F16 => "FP16",
            Wire::Bf16 => "BF16",
            Wire::F32 => "FP32",
            Wire::F64 => "FP64",
            Wire::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the binary extension; `None` for BYTES (length-prefixed).
    pub(crate) fn size(self) -> Option<usize> {
        Some(match self {
            Wire::Bool | Wire::U8 | Wire::I8 => 1,
            Wire::U16 | Wire::I16 | Wire::F16 | Wire::Bf16 => 2,
            Wire::U32 | Wire::I32 | Wire::F32 => 4,
            Wire::U64 | Wire::I64 | Wire::F64 => 8,
            Wire::Bytes => return None,
        })
    }

    /// The integer range of an integer datatype; `None` for the others.
    pub(crate) fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Wire::U8 => (0, u8::MAX.into()),
            Wire::U16 => (0, u16::MAX.into()),
            Wire::U32 => (0, u32::MAX.into()),
            Wire::U64 => (0, u64::MAX.into()),
            Wire::I8 => (i8::MIN.into(), i8::MAX.into()),
            Wire::I16 => (i16::MIN.into(), i16::MAX.into()),
            Wire::I32 => (i32::MIN.into(), i32::MAX.into()),
            Wire::I64 => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }

    /// The largest finite magnitude of a float datatype; `None` for the others.
    pub(crate) fn float_max(self) -> Option<f64> {
        Some(match self {
            Wire::F16 => 65504.0,
            Wire::Bf16 => 3.389_531_389_251_535_5e38,
            Wire::F32 => f64::from(f32::MAX),
            Wire::F64 => f64::MAX,
            _ => return None,
        })
    }

    /// Whether values of this datatype may be given to a model input of type `model`:
    /// numbers to numbers (integers only to integers), BOOL to BOOL, BYTES to BYTES.
    pub(crate) fn converts_to(self, model: ElemType) -> bool {
        match model {
            ElemType::Bool => self == Wire::Bool,
            ElemType::Int32 | ElemType::Int64 => self.int_range().is_some(),
            ElemType::Fp32 | ElemType::Fp64 => {
                self.int_range().is_some() || self.float_max().is_some()
            }
            ElemType::Bytes => self == Wire::Bytes,
        }
    }
}

/// IEEE 754 half precision to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let sign = if negative { 1u32 << 31 } else { 0 };
    let bits = match exp {
        0 => {
            // Zero or subnormal: man × 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if negative { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 to single precision (exact: bf16 is the top half of an f32).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Decodes `bytes` (exactly one input's `binary_data_size` bytes) holding `count` elements
/// of `wire`, converting them to `model`. `field` names the input in messages
/// (`inputs[0] (\`x\`)`). Conversion must have been checked with [`Wire::converts_to`].
pub(crate) fn decode_binary(
    bytes: &[u8],
    wire: Wire,
    model: ElemType,
    count: usize,
    field: &str,
) -> Result<TensorData, String> {
    let Some(size) = wire.size() else {
        return decode_bytes(bytes, count, field).map(TensorData::Bytes);
    };
    if count.checked_mul(size) != Some(bytes.len()) {
        return Err(format!(
            "binary_data_size {} for {field} does not match its shape: {count} {} elements take {} bytes",
            bytes.len(),
            wire.name(),
            count.saturating_mul(size)
        ));
    }
    let range_err = |i: usize, v: &dyn std::fmt::Display| {
        format!(
            "{field} element {i} is {v}, out of range for the model's {}",
            model.as_oip()
        )
    };
    Ok(match (wire, model) {
        (Wire::Bool, ElemType::Bool) => {
            let mut out = Vec::with_capacity(count);
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    0 => out.push(false),
                    1 => out.push(true),
                    _ => {
                        return Err(format!(
                            "{field} element {i} is byte {b}; BOOL takes 0 or 1"
                        ));
                    }
                }
            }
            TensorData::Bool(out)
        }
        // Same type: straight little-endian reads.
        (Wire::I32, ElemType::Int32) => TensorData::Int32(read(bytes, i32::from_le_bytes)),
        (Wire::I64, ElemType::Int64) => TensorData::Int64(read(bytes, i64::from_le_bytes)),
        (Wire::F32, ElemType::Fp32) => TensorData::Fp32(read(bytes, f32::from_le_bytes)),
        (Wire::F64, ElemType::Fp64) => TensorData::Fp64(read(bytes, f64::from_le_bytes)),
        (Wire::F16, ElemType::Fp32) => {
            TensorData::Fp32(read(bytes, |b| f16_to_f32(u16::from_le_bytes(b))))
        }
        (_, ElemType::Int32) => {
            let mut out = Vec::with_capacity(count);
            for_each_int(bytes, wire, |i, v| match i32::try_from(v) {
                Ok(v) => {
                    out.push(v);
                    Ok(())
                }
                Err(_) => Err(range_err(i, &v)),
            })?;
            TensorData::Int32(out)
        }
        (_, ElemType::Int64) => {
            let mut out = Vec::with_capacity(count);
            for_each_int(bytes, wire, |i, v| match i64::try_from(v) {
                Ok(v) => {
                    out.push(v);
                    Ok(())
                }
                Err(_) => Err(range_err(i, &v)),
            })?;
            TensorData::Int64(out)
        }
        (_, ElemType::Fp32) if wire.int_range().is_some() => {
            let mut out = Vec::with_capacity(count);
            for_each_int(bytes, wire, |_, v| {
                out.push(v as f32);
                Ok(())
            })?;
            TensorData::Fp32(out)
        }
        (_, ElemType::Fp64) if wire.int_range().is_some() => {
            let mut out = Vec::with_capacity(count);
            for_each_int(bytes, wire, |_, v| {
                out.push(v as f64);
                Ok(())
            })?;
            TensorData::Fp64(out)
        }
        (_, ElemType::Fp32) => {
            let mut out = Vec::with_capacity(count);
            for_each_float(bytes, wire, |i, v| {
                let f = v as f32;
                if v.is_finite() && !f.is_finite() {
                    return Err(range_err(i, &format_args!("{v:?}")));
                }
                out.push(f);
                Ok(())
            })?;
            TensorData::Fp32(out)
        }
        (_, ElemType::Fp64) => {
            let mut out = Vec::with_capacity(count);
            for_each_float(bytes, wire, |_, v| {
                out.push(v);
                Ok(())
            })?;
            TensorData::Fp64(out)
        }
        _ => {
            return Err(format!(
                "{field}: {} cannot be converted to {}",
                wire.name(),
                model.as_oip()
            ));
        }
    })
}

fn read<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    let (chunks, _) = bytes.as_chunks::<N>();
    chunks.iter().map(|c| f(*c)).collect()
}

fn each<const N: usize, T>(
    bytes: &[u8],
    conv: impl Fn([u8; N]) -> T,
    f: &mut impl FnMut(usize, T) -> Result<(), String>,
) -> Result<(), String> {
    let (chunks, _) = bytes.as_chunks::<N>();
    for (i, c) in chunks.iter().enumerate() {
        f(i, conv(*c))?;
    }
    Ok(())
}

fn for_each_int(
    bytes: &[u8],
    wire: Wire,
    mut f: impl FnMut(usize, i128) -> Result<(), String>,
) -> Result<(), String> {
    let f = &mut f;
    match wire {
        Wire::U8 => each(bytes, |b: [u8; 1]| i128::from(b[0]), f),
        Wire::I8 => each(bytes, |b| i128::from(i8::from_le_bytes(b)), f),
        Wire::U16 => each(bytes, |b| i128::from(u16::from_le_bytes(b)), f),
        Wire::I16 => each(bytes, |b| i128::from(i16::from_le_bytes(b)), f),
        Wire::U32 => each(bytes, |b| i128::from(u32::from_le_bytes(b)), f),
        Wire::I32 => each(bytes, |b| i128::from(i32::from_le_bytes(b)), f),
        Wire::U64 => each(bytes, |b| i128::from(u64::from_le_bytes(b)), f),
        Wire::I64 => each(bytes, |b| i128::from(i64::from_le_bytes(b)), f),
        _ => Err(format!("{} is not an integer datatype", wire.name())),
    }
}

fn for_each_float(
    bytes: &[u8],
    wire: Wire,
    mut f: impl FnMut(usize, f64) -> Result<(), String>,
) -> Result<(), String> {
    let f = &mut f;
    match wire {
        Wire::F16 => each(bytes, |b| f64::from(f16_to_f32(u16::from_le_bytes(b))), f),
        Wire::Bf16 => each(bytes, |b| f64::from(bf16_to_f32(u16::from_le_bytes(b))), f),
        Wire::F32 => each(bytes, |b| f64::from(f32::from_le_bytes(b)), f),
        Wire::F64 => each(bytes, f64::from_le_bytes, f),
        _ => Err(format!("{} is not a float datatype", wire.name())),
    }
}

/// BYTES elements: each a 4-byte little-endian length, then that many bytes.
fn decode_bytes(bytes: &[u8], count: usize, field: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
    let mut rest = bytes;
    for i in 0..count {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "{field}: BYTES element {i} of {count} runs past its binary_data_size ({} bytes)",
                bytes.len()
            ));
        };
        let n = u32::from_le_bytes(*len) as usize;
        let Some((elem, tail)) = tail.split_at_checked(n) else {
            return Err(format!(
                "{field}: BYTES element {i} declares {n} bytes but only {} remain of its binary_data_size ({} bytes)",
                tail.len(),
                bytes.len()
            ));
        };
        out.push(elem.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!(
            "{field}: {} bytes are left over after its {count} BYTES elements (binary_data_size {})",
            rest.len(),
            bytes.len()
        ));
    }
    Ok(out)
}
