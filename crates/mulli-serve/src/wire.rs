//! openpi's wire format: msgpack values, with numpy arrays as maps.
//!
//! `openpi_client.msgpack_numpy` packs an `np.ndarray` as a map with *binary* keys
//! `__ndarray__` (true), `data` (bin, the raw bytes in C order), `dtype` (str, numpy's
//! `dtype.str`, e.g. `<f4`, `|u1`) and `shape` (array of ints); numpy scalars as
//! `__npgeneric__` (true), `data` (the value), `dtype`. Everything else is plain msgpack with
//! str keys. We write exactly those bytes and read them leniently (str keys too), because a
//! non-Python client may not distinguish bin from str.

use rmpv::{Value, ValueRef};

use crate::error::FrameError;

/// Nesting limit for decoding: observation dicts are two or three levels deep; the limit keeps
/// a hostile frame from exhausting the stack.
pub const MAX_DEPTH: usize = 32;

/// Decode one msgpack frame. Trailing bytes after the value are an error (a well-formed
/// client never sends them, and accepting them would hide framing bugs).
pub fn decode_frame(bytes: &[u8]) -> Result<ValueRef<'_>, FrameError> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| FrameError::Msgpack(e.to_string()))?;
    if !rd.is_empty() {
        return Err(FrameError::Msgpack(format!(
            "{} trailing bytes after the message",
            rd.len()
        )));
    }
    Ok(value)
}

/// Encode a value as one msgpack frame.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// The element types numpy arrays arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DType {
    /// Parse numpy's `dtype.str` (`<f4`, `>i8`, `|u1`, `=f8`, …); returns the type and
    /// whether the data is big-endian.
    pub fn parse(s: &str) -> Result<(DType, bool), FrameError> {
        let bad = || FrameError::DType(s.to_string());
        let mut chars = s.chars();
        let order = chars.next().ok_or_else(bad)?;
        let big = match order {
            '<' | '|' | '=' => false,
            '>' => true,
            _ => return Err(bad()),
        };
        let t = match chars.as_str() {
            "b1" => DType::Bool,
            "u1" => DType::U8,
            "i1" => DType::I8,
            "u2" => DType::U16,
            "i2" => DType::I16,
            "u4" => DType::U32,
            "i4" => DType::I32,
            "u8" => DType::U64,
            "i8" => DType::I64,
            "f4" => DType::F32,
            "f8" => DType::F64,
            _ => return Err(bad()),
        };
        Ok((t, big && t.size() > 1))
    }

    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    /// numpy's little-endian `dtype.str`.
    pub fn numpy(self) -> &'static str {
        match self {
            DType::Bool => "|b1",
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::U16 => "<u2",
            DType::I16 => "<i2",
            DType::U32 => "<u4",
            DType::I32 => "<i4",
            DType::U64 => "<u8",
            DType::I64 => "<i8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

/// A numpy array borrowed from a decoded frame; `data` holds exactly
/// `shape.product() * dtype.size()` bytes (checked).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray<'a> {
    pub dtype: DType,
    pub big_endian: bool,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl NdArray<'_> {
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Element `i` as f64 (exact for every type but 64-bit integers above 2^53).
    pub fn get_f64(&self, i: usize) -> f64 {
        let n = self.dtype.size();
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.data[i * n..(i + 1) * n]);
        if self.big_endian {
            b[..n].reverse();
        }
        match self.dtype {
            DType::Bool => f64::from(u8::from(b[0] != 0)),
            DType::U8 => f64::from(b[0]),
            DType::I8 => f64::from(b[0] as i8),
            DType::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            DType::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            DType::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DType::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DType::U64 => u64::from_le_bytes(b) as f64,
            DType::I64 => i64::from_le_bytes(b) as f64,
            DType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DType::F64 => f64::from_le_bytes(b),
        }
    }

    /// Every element as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        if self.dtype == DType::F32 && !self.big_endian {
            return self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
        (0..self.len()).map(|i| self.get_f64(i) as f32).collect()
    }
}

/// Look a key up in a msgpack map, matching str or bin keys.
pub fn map_get<'v, 'a>(
    map: &'v [(ValueRef<'a>, ValueRef<'a>)],
    key: &str,
) -> Option<&'v ValueRef<'a>> {
    map.iter()
        .find(|(k, _)| key_str(k) == Some(key))
        .map(|(_, v)| v)
}

/// A map key as text, whether packed as str or (Python `bytes`) bin.
pub fn key_str<'v>(k: &'v ValueRef<'_>) -> Option<&'v str> {
    match k {
        ValueRef::String(s) => s.as_str(),
        ValueRef::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// If `value` is an `__ndarray__` map, the array it holds (or why it is malformed); `None`
/// for any other value.
pub fn as_ndarray<'a>(value: &ValueRef<'a>) -> Option<Result<NdArray<'a>, FrameError>> {
    let ValueRef::Map(m) = value else {
        return None;
    };
    map_get(m, "__ndarray__")?;
    Some(ndarray_fields(m))
}

fn ndarray_fields<'a>(m: &[(ValueRef<'a>, ValueRef<'a>)]) -> Result<NdArray<'a>, FrameError> {
    let field =
        |name: &'static str| map_get(m, name).ok_or(FrameError::NdArrayField(name, "missing"));
    let data = match field("data")? {
        ValueRef::Binary(b) => *b,
        _ => return Err(FrameError::NdArrayField("data", "not binary")),
    };
    let dtype = match field("dtype")? {
        ValueRef::String(s) => s
            .as_str()
            .ok_or(FrameError::NdArrayField("dtype", "not UTF-8"))?,
        ValueRef::Binary(b) => {
            std::str::from_utf8(b).map_err(|_| FrameError::NdArrayField("dtype", "not UTF-8"))?
        }
        _ => return Err(FrameError::NdArrayField("dtype", "not a string")),
    };
    let (dtype, big_endian) = DType::parse(dtype)?;
    let ValueRef::Array(dims) = field("shape")? else {
        return Err(FrameError::NdArrayField("shape", "not an array"));
    };
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for d in dims {
        let d = match d {
            ValueRef::Integer(i) => i.as_u64().and_then(|v| usize::try_from(v).ok()),
            _ => None,
        }
        .ok_or(FrameError::NdArrayField(
            "shape",
            "has a dimension that is not a non-negative integer",
        ))?;
        count = count
            .checked_mul(d)
            .ok_or(FrameError::NdArrayField("shape", "overflows"))?;
        shape.push(d);
    }
    let want = count
        .checked_mul(dtype.size())
        .ok_or(FrameError::NdArrayField("shape", "overflows"))?;
    if data.len() != want {
        return Err(FrameError::NdArraySize {
            shape: shape.clone(),
            dtype: dtype.numpy(),
            expected: want,
            got: data.len(),
        });
    }
    Ok(NdArray {
        dtype,
        big_endian,
        shape,
        data,
    })
}

/// `value` as a numpy array packed like `msgpack_numpy.pack_array` (binary keys, in its order).
pub fn ndarray_value(dtype: DType, shape: &[usize], data: Vec<u8>) -> Value {
    Value::Map(vec![
        (Value::Binary(b"__ndarray__".to_vec()), Value::Boolean(true)),
        (Value::Binary(b"data".to_vec()), Value::Binary(data)),
        (Value::Binary(b"dtype".to_vec()), Value::from(dtype.numpy())),
        (
            Value::Binary(b"shape".to_vec()),
            Value::Array(shape.iter().map(|&d| Value::from(d as u64)).collect()),
        ),
    ])
}

/// Little-endian float32 array.
pub fn f32_array(shape: &[usize], values: &[f32]) -> Value {
    let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    ndarray_value(DType::F32, shape, data)
}

/// A number: a msgpack int/float or a numpy scalar (`__npgeneric__`).
pub fn as_number(value: &ValueRef<'_>) -> Option<f64> {
    match value {
        ValueRef::Integer(i) => i.as_f64(),
        ValueRef::F32(v) => Some(f64::from(*v)),
        ValueRef::F64(v) => Some(*v),
        ValueRef::Boolean(b) => Some(f64::from(u8::from(*b))),
        ValueRef::Map(m) if map_get(m, "__npgeneric__").is_some() => {
            map_get(m, "data").and_then(as_number)
        }
        _ => None,
    }
}

/// A short description of a value's type, for error messages.
pub fn describe(value: &ValueRef<'_>) -> String {
    match value {
        ValueRef::Nil => "nil".into(),
        ValueRef::Boolean(_) => "a boolean".into(),
        ValueRef::Integer(_) => "an integer".into(),
        ValueRef::F32(_) | ValueRef::F64(_) => "a float".into(),
        ValueRef::String(_) => "a string".into(),
        ValueRef::Binary(b) => format!("{} bytes of binary", b.len()),
        ValueRef::Array(a) => format!("a list of {}", a.len()),
        ValueRef::Map(_) => match as_ndarray(value) {
            Some(Ok(a)) => format!("a {} array of shape {:?}", a.dtype.numpy(), a.shape),
            Some(Err(e)) => format!("a malformed array ({e})"),
            None => "a map".into(),
        },
        ValueRef::Ext(..) => "a msgpack extension".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `msgpack_numpy.packb(np.array([[1.5, -2.0]], dtype=np.float32))` from openpi-client 0.1.2
    /// (msgpack 1.2.4), byte for byte.
    const PY_F32_1X2: &[u8] = b"\x84\xc4\x0b__ndarray__\xc3\xc4\x04data\xc4\x08\x00\x00\xc0?\x00\x00\x00\xc0\xc4\x05dtype\xa3<f4\xc4\x05shape\x92\x01\x02";

    #[test]
    fn encodes_arrays_exactly_like_openpi_client() {
        let v = f32_array(&[1, 2], &[1.5, -2.0]);
        assert_eq!(encode(&v), PY_F32_1X2);
    }

    #[test]
    fn decodes_openpi_client_arrays() {
        let v = decode_frame(PY_F32_1X2).unwrap();
        let a = as_ndarray(&v).unwrap().unwrap();
        assert_eq!(a.dtype, DType::F32);
        assert_eq!(a.shape, [1, 2]);
        assert_eq!(a.to_f32(), [1.5, -2.0]);
    }

    #[test]
    fn dtypes_parse_with_byte_order() {
        assert_eq!(DType::parse("|u1").unwrap(), (DType::U8, false));
        assert_eq!(DType::parse(">f8").unwrap(), (DType::F64, true));
        assert_eq!(DType::parse(">u1").unwrap(), (DType::U8, false));
        assert!(DType::parse("<c8").is_err());
        assert!(DType::parse("").is_err());
        assert!(DType::parse("<U5").is_err());
    }

    #[test]
    fn big_endian_values_are_swapped() {
        let data = 1.25f64.to_be_bytes().to_vec();
        let v = Value::Map(vec![
            (Value::from("__ndarray__"), Value::Boolean(true)),
            (Value::from("data"), Value::Binary(data)),
            (Value::from("dtype"), Value::from(">f8")),
            (Value::from("shape"), Value::Array(vec![Value::from(1)])),
        ]);
        let bytes = encode(&v);
        let d = decode_frame(&bytes).unwrap();
        assert_eq!(as_ndarray(&d).unwrap().unwrap().to_f32(), [1.25]);
    }

    #[test]
    fn size_mismatch_and_overflow_are_errors() {
        let mut v = f32_array(&[2, 2], &[0.0; 3]);
        let bytes = encode(&v);
        let d = decode_frame(&bytes).unwrap();
        let e = as_ndarray(&d).unwrap().unwrap_err().to_string();
        assert!(e.contains("16 bytes") && e.contains("12"), "{e}");
        if let Value::Map(m) = &mut v {
            m[3].1 = Value::Array(vec![Value::from(u64::MAX), Value::from(u64::MAX)]);
        }
        let bytes = encode(&v);
        let d = decode_frame(&bytes).unwrap();
        assert!(as_ndarray(&d).unwrap().is_err());
    }

    #[test]
    fn trailing_bytes_and_truncation_are_errors() {
        let mut b = encode(&Value::from(1));
        b.push(0);
        assert!(decode_frame(&b).is_err());
        assert!(decode_frame(&PY_F32_1X2[..10]).is_err());
        assert!(decode_frame(&[]).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let bytes = vec![0x91u8; 100_000];
        assert!(decode_frame(&bytes).is_err());
    }

    #[test]
    fn numpy_scalars_are_numbers() {
        let v = Value::Map(vec![
            (
                Value::Binary(b"__npgeneric__".to_vec()),
                Value::Boolean(true),
            ),
            (Value::Binary(b"data".to_vec()), Value::F64(0.5)),
            (Value::Binary(b"dtype".to_vec()), Value::from("<f8")),
        ]);
        let bytes = encode(&v);
        assert_eq!(as_number(&decode_frame(&bytes).unwrap()), Some(0.5));
    }
}
