//! Parsing of dense vector files: `.fvecs`, `.bvecs` and NumPy `.npy`.
//!
//! Owns the byte layouts of the three formats and their validation (consistent dimension,
//! truncation, finite values). It must not touch the file system: every function here takes
//! the file's bytes and a display name used in error messages; `super::read_vectors` does the
//! reading.
//!
//! ```text
//! fvecs record:  | d: i32 LE | d x f32 LE |       (repeated; every record has the same d)
//! bvecs record:  | d: i32 LE | d x u8     |
//! npy v1:        | \x93NUMPY | major=1 | minor | header_len: u16 LE | header | data |
//! npy v2/v3:     | \x93NUMPY | major=2,3 | minor | header_len: u32 LE | header | data |
//!                header = Python dict literal {'descr': .., 'fortran_order': .., 'shape': ..}
//! ```
//!
//! Records are numbered from 0, like vector ids (a vector's id is its position in the file).

use std::path::Path;

use crate::error::{Error, Result};
use crate::metric::MAX_COMPONENT_MAGNITUDE;

/// Largest accepted dimension: anything wider is far more likely a corrupt or misread header
/// (e.g. a raw float read as an int32) than a real embedding.
pub const MAX_DIMENSION: usize = 65_536;

/// A dense set of vectors, all of the same dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSet {
    /// Number of vectors (rows).
    pub num_vectors: usize,
    /// Number of components per vector.
    pub dim: usize,
    /// Row-major values: vector `i` is `data[i * dim..(i + 1) * dim]`.
    pub data: Vec<f32>,
}

impl VectorSet {
    /// Returns the components of vector `index`. Panics if `index >= num_vectors`.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.data[index * self.dim..(index + 1) * self.dim]
    }
}

/// The on-disk layout of a vector file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorFormat {
    /// Per record: an int32 LE dimension, then that many float32 LE values.
    Fvecs,
    /// Per record: an int32 LE dimension, then that many uint8 values.
    Bvecs,
    /// NumPy `.npy` (versions 1 to 3), a 2-d C-order array of `<f4`, `<f8` or `|u1`.
    Npy,
}

impl VectorFormat {
    /// Returns the format named by the extension of `path` (`.fvecs`, `.bvecs`, `.npy`; any case).
    pub fn from_path(path: &Path) -> Result<VectorFormat> {
        const SUPPORTED: &str = "supported: .fvecs, .bvecs, .npy";
        let Some(extension) = path.extension() else {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("vector file has no extension ({SUPPORTED})"),
            ));
        };
        let extension = extension.to_string_lossy();
        match extension.to_ascii_lowercase().as_str() {
            "fvecs" => Ok(VectorFormat::Fvecs),
            "bvecs" => Ok(VectorFormat::Bvecs),
            "npy" => Ok(VectorFormat::Npy),
            _ => Err(Error::invalid(
                path.display().to_string(),
                format!("unknown vector file extension '.{extension}' ({SUPPORTED})"),
            )),
        }
    }
}

/// Which values a file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueRange {
    /// Vector components: finite and at most [`MAX_COMPONENT_MAGNITUDE`] in magnitude.
    Components,
    /// Any finite value (ground-truth distances, whose files pad missing neighbours with
    /// -f32::MAX).
    Finite,
}

impl ValueRange {
    fn max_magnitude(self) -> f32 {
        match self {
            ValueRange::Components => MAX_COMPONENT_MAGNITUDE,
            ValueRange::Finite => f32::MAX,
        }
    }
}

/// Parses the bytes of a vector file; `name` (usually the path) prefixes every error field.
/// Components must be finite and at most [`MAX_COMPONENT_MAGNITUDE`] in magnitude.
pub fn parse_vectors(name: &str, format: VectorFormat, bytes: &[u8]) -> Result<VectorSet> {
    parse_rows(name, format, bytes, ValueRange::Components)
}

/// Parses the bytes of a ground-truth distance file (same layouts as vector files): values
/// must be finite, of any magnitude.
pub fn parse_distances(name: &str, format: VectorFormat, bytes: &[u8]) -> Result<VectorSet> {
    parse_rows(name, format, bytes, ValueRange::Finite)
}

fn parse_rows(
    name: &str,
    format: VectorFormat,
    bytes: &[u8],
    range: ValueRange,
) -> Result<VectorSet> {
    match format {
        VectorFormat::Fvecs => parse_texmex::<F32Le>(name, bytes, range),
        VectorFormat::Bvecs => parse_texmex::<U8>(name, bytes, range),
        VectorFormat::Npy => parse_npy(name, bytes, range),
    }
}

/// Returns `vectors` encoded as `.fvecs` bytes.
pub fn write_fvecs(vectors: &VectorSet) -> Vec<u8> {
    debug_assert_eq!(vectors.data.len(), vectors.num_vectors * vectors.dim);
    let dim_header = i32::try_from(vectors.dim)
        .expect("a vector set never has more than i32::MAX components per vector")
        .to_le_bytes();
    let mut bytes = Vec::with_capacity(vectors.num_vectors * (4 + 4 * vectors.dim));
    if vectors.dim == 0 {
        return bytes;
    }
    for row in vectors.data.chunks_exact(vectors.dim) {
        bytes.extend_from_slice(&dim_header);
        for value in row {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    bytes
}

/// One element encoding: how many bytes it takes and how it becomes an `f32`.
trait Element {
    /// Bytes per element.
    const WIDTH: usize;
    /// True when every stored value converts to a finite `f32`, so the check can be skipped.
    const ALWAYS_FINITE: bool = false;
    /// Decodes one element; `bytes.len() == WIDTH`.
    fn decode(bytes: &[u8]) -> f32;
    /// Returns the stored value at full precision, for error messages.
    fn original(bytes: &[u8]) -> f64;
    /// Appends the decoded elements of `payload` to `data`.
    #[inline(always)]
    fn decode_into(payload: &[u8], data: &mut Vec<f32>) {
        data.extend(payload.chunks_exact(Self::WIDTH).map(Self::decode));
    }
}

struct F32Le;
struct F64Le;
struct U8;

impl Element for F32Le {
    const WIDTH: usize = 4;
    #[inline(always)]
    fn decode(bytes: &[u8]) -> f32 {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
    fn original(bytes: &[u8]) -> f64 {
        f64::from(Self::decode(bytes))
    }
}

impl Element for F64Le {
    const WIDTH: usize = 8;
    #[inline(always)]
    fn decode(bytes: &[u8]) -> f32 {
        Self::original(bytes) as f32
    }
    #[inline(always)]
    fn original(bytes: &[u8]) -> f64 {
        f64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    }
}

impl Element for U8 {
    const WIDTH: usize = 1;
    const ALWAYS_FINITE: bool = true;
    #[inline(always)]
    fn decode(bytes: &[u8]) -> f32 {
        f32::from(bytes[0])
    }
    fn original(bytes: &[u8]) -> f64 {
        f64::from(bytes[0])
    }
    #[inline(always)]
    fn decode_into(payload: &[u8], data: &mut Vec<f32>) {
        // A plain byte iterator vectorises better than one-byte chunks.
        data.extend(payload.iter().map(|&byte| f32::from(byte)));
    }
}

/// Returns the error field naming record `index` that starts at `byte_offset`.
fn record_field(name: &str, index: usize, byte_offset: usize) -> String {
    format!("{name}: record {index} (byte {byte_offset})")
}

/// Checks a dimension read from a header and returns it as `usize`.
fn checked_dimension(field: impl FnOnce() -> String, dim: i64) -> Result<usize> {
    if dim == 0 {
        return Err(Error::invalid(
            field(),
            "dimension is 0 (a vector needs at least one component)",
        ));
    }
    match usize::try_from(dim) {
        Ok(dim) if dim <= MAX_DIMENSION => Ok(dim),
        _ => Err(Error::invalid(
            field(),
            format!("dimension {dim} is out of range (1..={MAX_DIMENSION})"),
        )),
    }
}

/// Parses the TEXMEX layouts (fvecs, bvecs): records of `| d: i32 LE | d elements |`.
fn parse_texmex<E: Element>(name: &str, bytes: &[u8], range: ValueRange) -> Result<VectorSet> {
    const HEADER_BYTES: usize = 4;
    if bytes.is_empty() {
        return Err(Error::invalid(name, "empty file (zero vectors)"));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(truncated_header(name, 0, 0, bytes.len()));
    }
    let first_dim = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let dim = checked_dimension(|| record_field(name, 0, 0), i64::from(first_dim))?;
    let record_bytes = HEADER_BYTES + dim * E::WIDTH;

    let mut data: Vec<f32> = Vec::with_capacity(bytes.len() / record_bytes * dim);
    let mut offset = 0;
    let mut record_index = 0;
    while offset < bytes.len() {
        let remaining = &bytes[offset..];
        if remaining.len() < HEADER_BYTES {
            return Err(truncated_header(
                name,
                record_index,
                offset,
                remaining.len(),
            ));
        }
        let record_dim =
            i32::from_le_bytes([remaining[0], remaining[1], remaining[2], remaining[3]]);
        if record_dim != first_dim {
            return Err(Error::invalid(
                record_field(name, record_index, offset),
                format!("wrong dimension: expected {dim} (as in record 0), found {record_dim}"),
            ));
        }
        if remaining.len() < record_bytes {
            return Err(Error::invalid(
                record_field(name, record_index, offset),
                format!(
                    "truncated file: the record needs {record_bytes} bytes but only {} remain \
                     ({} bytes missing)",
                    remaining.len(),
                    record_bytes - remaining.len()
                ),
            ));
        }
        let payload = &remaining[HEADER_BYTES..record_bytes];
        decode_row::<E>(payload, &mut data, range, || {
            record_field(name, record_index, offset)
        })?;
        offset += record_bytes;
        record_index += 1;
    }
    Ok(VectorSet {
        num_vectors: record_index,
        dim,
        data,
    })
}

fn truncated_header(name: &str, index: usize, offset: usize, available: usize) -> Error {
    Error::invalid(
        record_field(name, index, offset),
        format!(
            "truncated file: the record's 4-byte dimension header has only {available} bytes \
             ({} bytes missing)",
            4 - available
        ),
    )
}

/// Appends the decoded elements of one row to `data`, rejecting NaN and infinite values and,
/// for vector components, values beyond [`MAX_COMPONENT_MAGNITUDE`], whose squared distances
/// would overflow.
#[inline]
fn decode_row<E: Element>(
    payload: &[u8],
    data: &mut Vec<f32>,
    range: ValueRange,
    field: impl FnOnce() -> String,
) -> Result<()> {
    let row_start = data.len();
    E::decode_into(payload, data);
    if E::ALWAYS_FINITE {
        return Ok(());
    }
    // The row was just written and is still in L1, so this check costs little next to the
    // decode; a fold (not `all`) has no early exit, so it stays branch-free and vectorises.
    let row = &data[row_start..];
    // NaN fails the comparison too.
    let max_magnitude = range.max_magnitude();
    let in_range = |value: &f32| value.abs() <= max_magnitude;
    if row
        .iter()
        .fold(true, |all_in_range, value| all_in_range & in_range(value))
    {
        return Ok(());
    }
    let component = row
        .iter()
        .position(|value| !in_range(value))
        .expect("an out-of-range value exists since the fold found one");
    let original = E::original(&payload[component * E::WIDTH..(component + 1) * E::WIDTH]);
    let reason = if original.is_finite() && row[component].is_finite() {
        format!(
            "component {component} ({original:e}) is beyond {MAX_COMPONENT_MAGNITUDE:e} in \
             magnitude, where distances overflow (components count from 0)"
        )
    } else if original.is_finite() {
        format!("component {component} ({original:e}) overflows float32 (components count from 0)")
    } else {
        format!("component {component} is {original} (components count from 0)")
    };
    Err(Error::invalid(field(), reason))
}

/// The npy element types this reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NpyDtype {
    F32,
    F64,
    U8,
}

impl NpyDtype {
    fn width(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
            NpyDtype::U8 => 1,
        }
    }
}

/// What the npy header says about the array.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    dtype: NpyDtype,
    num_rows: usize,
    dim: usize,
    /// Byte offset of the first data byte.
    data_offset: usize,
}

const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

fn parse_npy(name: &str, bytes: &[u8], range: ValueRange) -> Result<VectorSet> {
    let header = parse_npy_header(name, bytes)?;
    let width = header.dtype.width();
    let row_bytes = header.dim * width;
    let data_bytes = &bytes[header.data_offset..];
    let expected_bytes = header
        .num_rows
        .checked_mul(row_bytes)
        .ok_or_else(|| Error::invalid(format!("{name}: npy header"), "shape is too large"))?;
    if data_bytes.len() < expected_bytes {
        let full_rows = data_bytes.len() / row_bytes;
        let partial_bytes = data_bytes.len() % row_bytes;
        return Err(Error::invalid(
            record_field(name, full_rows, header.data_offset + full_rows * row_bytes),
            format!(
                "truncated file: the record needs {row_bytes} bytes but only {partial_bytes} \
                 remain ({} bytes missing in this record, {} in total for shape ({}, {}))",
                row_bytes - partial_bytes,
                expected_bytes - data_bytes.len(),
                header.num_rows,
                header.dim
            ),
        ));
    }
    if data_bytes.len() > expected_bytes {
        return Err(Error::invalid(
            format!("{name}: byte {}", header.data_offset + expected_bytes),
            format!(
                "{} unexpected bytes after the last record of shape ({}, {})",
                data_bytes.len() - expected_bytes,
                header.num_rows,
                header.dim
            ),
        ));
    }
    let mut data: Vec<f32> = Vec::with_capacity(header.num_rows * header.dim);
    for (row_index, row) in data_bytes.chunks_exact(row_bytes).enumerate() {
        let field = || record_field(name, row_index, header.data_offset + row_index * row_bytes);
        match header.dtype {
            NpyDtype::F32 => decode_row::<F32Le>(row, &mut data, range, field)?,
            NpyDtype::F64 => decode_row::<F64Le>(row, &mut data, range, field)?,
            NpyDtype::U8 => decode_row::<U8>(row, &mut data, range, field)?,
        }
    }
    Ok(VectorSet {
        num_vectors: header.num_rows,
        dim: header.dim,
        data,
    })
}

fn parse_npy_header(name: &str, bytes: &[u8]) -> Result<NpyHeader> {
    let field = format!("{name}: npy header");
    if bytes.is_empty() {
        return Err(Error::invalid(name, "empty file (zero vectors)"));
    }
    if bytes.len() < 8 || &bytes[..6] != NPY_MAGIC {
        return Err(Error::invalid(
            field,
            "bad magic: not a .npy file (it must start with \\x93NUMPY)",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => {
            if bytes.len() < 10 {
                return Err(Error::invalid(
                    field,
                    "truncated file: header length is cut off",
                ));
            }
            (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10)
        }
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::invalid(
                    field,
                    "truncated file: header length is cut off",
                ));
            }
            let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (header_len as usize, 12)
        }
        _ => {
            return Err(Error::invalid(
                field,
                format!("unsupported npy version {major}.{minor} (supported: 1.x, 2.x, 3.x)"),
            ));
        }
    };
    let header_end = header_start + header_len;
    if bytes.len() < header_end {
        return Err(Error::invalid(
            field,
            format!(
                "truncated file: the header needs {header_len} bytes but only {} remain",
                bytes.len() - header_start
            ),
        ));
    }
    // Versions 1 and 2 store the header as latin-1 and version 3 as UTF-8; the keys and
    // values we accept are ASCII, so anything else is rejected either way.
    let Ok(header_text) = std::str::from_utf8(&bytes[header_start..header_end]) else {
        return Err(Error::invalid(field, "header is not ASCII/UTF-8 text"));
    };
    let literal = PyLiteralParser::new(header_text)
        .parse_complete()
        .map_err(|reason| Error::invalid(field.clone(), format!("bad header dict: {reason}")))?;
    let PyLiteral::Dict(entries) = literal else {
        return Err(Error::invalid(
            field,
            "bad header dict: the header is not a dict",
        ));
    };
    let lookup = |key: &str| -> Result<&PyLiteral> {
        entries
            .iter()
            .find(|(entry_key, _)| entry_key == key)
            .map(|(_, value)| value)
            .ok_or_else(|| {
                Error::invalid(
                    field.clone(),
                    format!("bad header dict: missing key '{key}'"),
                )
            })
    };

    let dtype = match lookup("descr")? {
        PyLiteral::Str(descr) => match descr.as_str() {
            "<f4" => NpyDtype::F32,
            "<f8" => NpyDtype::F64,
            "|u1" | "<u1" | ">u1" | "=u1" | "u1" => NpyDtype::U8,
            other => {
                return Err(Error::invalid(
                    field,
                    format!(
                        "unsupported dtype '{other}' (supported: '<f4', '<f8', '|u1'; \
                         little-endian only)"
                    ),
                ));
            }
        },
        _ => {
            return Err(Error::invalid(
                field,
                "unsupported dtype: structured arrays are not supported (supported: '<f4', \
                 '<f8', '|u1')",
            ));
        }
    };
    match lookup("fortran_order")? {
        PyLiteral::Bool(false) => {}
        PyLiteral::Bool(true) => {
            return Err(Error::invalid(
                field,
                "fortran_order is True: only C-order arrays are supported (save with \
                 numpy.ascontiguousarray)",
            ));
        }
        _ => {
            return Err(Error::invalid(
                field,
                "bad header dict: fortran_order must be True or False",
            ));
        }
    }
    let PyLiteral::Tuple(shape) = lookup("shape")? else {
        return Err(Error::invalid(
            field,
            "bad header dict: shape must be a tuple",
        ));
    };
    let mut extents = Vec::with_capacity(shape.len());
    for extent in shape {
        match extent {
            PyLiteral::Int(value) => extents.push(*value),
            _ => {
                return Err(Error::invalid(
                    field,
                    "bad header dict: shape must be a tuple of integers",
                ));
            }
        }
    }
    let [num_rows, dim] = extents[..] else {
        return Err(Error::invalid(
            field,
            format!(
                "shape {} is {}-d, expected a 2-d array (num_vectors, dim)",
                format_shape(&extents),
                extents.len()
            ),
        ));
    };
    let num_rows = usize::try_from(num_rows)
        .map_err(|_| Error::invalid(field.clone(), format!("shape has {num_rows} rows")))?;
    if num_rows == 0 {
        return Err(Error::invalid(name, "empty file (zero vectors)"));
    }
    let dim = checked_dimension(|| field.clone(), dim)?;
    Ok(NpyHeader {
        dtype,
        num_rows,
        dim,
        data_offset: header_end,
    })
}

fn format_shape(extents: &[i64]) -> String {
    match extents {
        [single] => format!("({single},)"),
        _ => {
            let parts: Vec<String> = extents.iter().map(i64::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The subset of Python literals that npy headers use.
#[derive(Debug, Clone, PartialEq)]
enum PyLiteral {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    /// Tuples and lists alike.
    Tuple(Vec<PyLiteral>),
    Dict(Vec<(String, PyLiteral)>),
}

/// A recursive-descent parser for the header dict; errors are reasons for `Error::invalid`.
struct PyLiteralParser<'a> {
    text: &'a [u8],
    position: usize,
}

/// Bounds recursion so a hostile header cannot overflow the stack.
const MAX_LITERAL_DEPTH: usize = 16;

impl<'a> PyLiteralParser<'a> {
    fn new(text: &'a str) -> Self {
        PyLiteralParser {
            text: text.as_bytes(),
            position: 0,
        }
    }

    fn parse_complete(mut self) -> std::result::Result<PyLiteral, String> {
        let literal = self.parse_value(0)?;
        self.skip_whitespace();
        if self.position != self.text.len() {
            return Err(format!("unexpected text at header byte {}", self.position));
        }
        Ok(literal)
    }

    fn skip_whitespace(&mut self) {
        while self
            .text
            .get(self.position)
            .is_some_and(|byte| byte.is_ascii_whitespace())
        {
            self.position += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.get(self.position).copied()
    }

    fn parse_value(&mut self, depth: usize) -> std::result::Result<PyLiteral, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err("nesting is too deep".to_string());
        }
        match self.peek() {
            None => Err("unexpected end of header".to_string()),
            Some(b'{') => self.parse_dict(depth),
            Some(b'(') => self.parse_sequence(b')', depth),
            Some(b'[') => self.parse_sequence(b']', depth),
            Some(b'\'' | b'"') => self.parse_string().map(PyLiteral::Str),
            Some(byte) if byte == b'-' || byte.is_ascii_digit() => self.parse_int(),
            Some(byte) if byte.is_ascii_alphabetic() => self.parse_word(),
            Some(byte) => Err(format!(
                "unexpected character '{}' at header byte {}",
                byte.escape_ascii(),
                self.position
            )),
        }
    }

    fn parse_dict(&mut self, depth: usize) -> std::result::Result<PyLiteral, String> {
        self.position += 1; // '{'
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.position += 1;
                return Ok(PyLiteral::Dict(entries));
            }
            let key = match self.parse_value(depth + 1)? {
                PyLiteral::Str(key) => key,
                _ => return Err("dict keys must be strings".to_string()),
            };
            if self.peek() != Some(b':') {
                return Err(format!("expected ':' at header byte {}", self.position));
            }
            self.position += 1;
            let value = self.parse_value(depth + 1)?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '}}' at header byte {}",
                        self.position
                    ))
                }
            }
        }
    }

    fn parse_sequence(
        &mut self,
        close: u8,
        depth: usize,
    ) -> std::result::Result<PyLiteral, String> {
        self.position += 1; // '(' or '['
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.position += 1;
                return Ok(PyLiteral::Tuple(items));
            }
            items.push(self.parse_value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(byte) if byte == close => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '{}' at header byte {}",
                        char::from(close),
                        self.position
                    ));
                }
            }
        }
    }

    fn parse_string(&mut self) -> std::result::Result<String, String> {
        let quote = self.text[self.position];
        let start = self.position + 1;
        let Some(length) = self.text[start..].iter().position(|&byte| byte == quote) else {
            return Err("unterminated string".to_string());
        };
        let content = &self.text[start..start + length];
        if content.contains(&b'\\') {
            return Err("escape sequences in strings are not supported".to_string());
        }
        self.position = start + length + 1;
        // The input is a &str and quotes are ASCII, so the slice is valid UTF-8.
        Ok(String::from_utf8_lossy(content).into_owned())
    }

    fn parse_int(&mut self) -> std::result::Result<PyLiteral, String> {
        let start = self.position;
        if self.text[self.position] == b'-' {
            self.position += 1;
        }
        while self.text.get(self.position).is_some_and(u8::is_ascii_digit) {
            self.position += 1;
        }
        let digits = std::str::from_utf8(&self.text[start..self.position])
            .expect("the scanned bytes are ASCII digits and '-'");
        let value: i64 = digits
            .parse()
            .map_err(|_| format!("bad integer '{digits}' at header byte {start}"))?;
        // Python 2 wrote long integers with an 'L' suffix, e.g. (3L, 4L).
        if self.text.get(self.position) == Some(&b'L') {
            self.position += 1;
        }
        Ok(PyLiteral::Int(value))
    }

    fn parse_word(&mut self) -> std::result::Result<PyLiteral, String> {
        let start = self.position;
        while self
            .text
            .get(self.position)
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
        {
            self.position += 1;
        }
        match &self.text[start..self.position] {
            b"True" => Ok(PyLiteral::Bool(true)),
            b"False" => Ok(PyLiteral::Bool(false)),
            b"None" => Ok(PyLiteral::None),
            word => Err(format!(
                "unexpected word '{}' at header byte {start}",
                word.escape_ascii()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_set(num_vectors: usize, dim: usize) -> VectorSet {
        let data = (0..num_vectors * dim)
            .map(|index| index as f32 * 0.5 - 3.25)
            .collect();
        VectorSet {
            num_vectors,
            dim,
            data,
        }
    }

    fn reason_of(error: Error) -> (String, String) {
        match error {
            Error::InvalidInput { field, reason } => (field, reason),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn fvecs_error(bytes: &[u8]) -> (String, String) {
        reason_of(parse_vectors("base.fvecs", VectorFormat::Fvecs, bytes).unwrap_err())
    }

    /// Builds npy bytes with a header padded per the spec (total header size a multiple of 64).
    fn npy_bytes(major: u8, header_dict: &str, data: &[u8]) -> Vec<u8> {
        let length_bytes = if major == 1 { 2 } else { 4 };
        let prefix = 6 + 2 + length_bytes;
        let unpadded = prefix + header_dict.len() + 1;
        let padding = (64 - unpadded % 64) % 64;
        let header = format!("{header_dict}{}\n", " ".repeat(padding));
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[major, 0]);
        if major == 1 {
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(header.as_bytes());
        assert_eq!(bytes.len() % 64, 0);
        bytes.extend_from_slice(data);
        bytes
    }

    fn f32_le(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }

    #[test]
    fn fvecs_round_trip() {
        let vectors = vector_set(7, 5);
        let bytes = write_fvecs(&vectors);
        assert_eq!(bytes.len(), 7 * (4 + 4 * 5));
        let parsed = parse_vectors("x.fvecs", VectorFormat::Fvecs, &bytes).unwrap();
        assert_eq!(parsed, vectors);
        assert_eq!(parsed.row(2), &vectors.data[10..15]);
    }

    #[test]
    fn distance_files_take_any_finite_value_and_vector_files_are_bounded() {
        // Ground-truth files pad the neighbours a filter leaves missing with -f32::MAX.
        let padded = VectorSet {
            num_vectors: 1,
            dim: 3,
            data: vec![0.5, -f32::MAX, 1e20],
        };
        let bytes = write_fvecs(&padded);
        let parsed = parse_distances("gt.fvecs", VectorFormat::Fvecs, &bytes).unwrap();
        assert_eq!(parsed, padded);
        let (field, reason) = fvecs_error(&bytes);
        assert_eq!(field, "base.fvecs: record 0 (byte 0)");
        assert!(
            reason.contains("component 1") && reason.contains("beyond"),
            "{reason}"
        );
        let mut infinite = bytes.clone();
        infinite[8..12].copy_from_slice(&f32::INFINITY.to_le_bytes());
        let error = parse_distances("gt.fvecs", VectorFormat::Fvecs, &infinite).unwrap_err();
        assert!(error.to_string().contains("component 1 is inf"), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn fvecs_round_trip_any_shape(
            dim in 1usize..6,
            values in proptest::collection::vec(-1e15f32..1e15f32, 1..40),
        ) {
            let num_vectors = values.len().div_ceil(dim);
            let mut data = values;
            data.resize(num_vectors * dim, -0.0);
            let vectors = VectorSet { num_vectors, dim, data };
            let parsed = parse_vectors("x.fvecs", VectorFormat::Fvecs, &write_fvecs(&vectors)).unwrap();
            proptest::prop_assert_eq!(parsed, vectors);
        }
    }

    #[test]
    fn bvecs_are_converted_to_f32() {
        let mut bytes = Vec::new();
        for row in [[0u8, 1, 255], [7, 8, 9]] {
            bytes.extend_from_slice(&3i32.to_le_bytes());
            bytes.extend_from_slice(&row);
        }
        let parsed = parse_vectors("x.bvecs", VectorFormat::Bvecs, &bytes).unwrap();
        assert_eq!(parsed.num_vectors, 2);
        assert_eq!(parsed.dim, 3);
        assert_eq!(parsed.data, vec![0.0, 1.0, 255.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn npy_f4_all_versions() {
        let values: Vec<f32> = (0..12).map(|index| index as f32 - 2.5).collect();
        for major in [1, 2, 3] {
            let bytes = npy_bytes(
                major,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
                &f32_le(&values),
            );
            let parsed = parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap();
            assert_eq!(parsed.num_vectors, 3);
            assert_eq!(parsed.dim, 4);
            assert_eq!(parsed.data, values);
        }
    }

    #[test]
    fn npy_f8_and_u1_are_converted() {
        let f64_values = [1.5f64, -2.0, 0.25, 1e10];
        let data: Vec<u8> = f64_values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = npy_bytes(
            1,
            "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2L, 2L)}",
            &data,
        );
        let parsed = parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap();
        assert_eq!(parsed.data, vec![1.5, -2.0, 0.25, 1e10]);

        let bytes = npy_bytes(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3), }",
            &[3, 200, 0],
        );
        let parsed = parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap();
        assert_eq!(parsed.data, vec![3.0, 200.0, 0.0]);
    }

    #[test]
    fn format_from_path() {
        assert_eq!(
            VectorFormat::from_path(Path::new("a/base.fvecs")).unwrap(),
            VectorFormat::Fvecs
        );
        assert_eq!(
            VectorFormat::from_path(Path::new("base.BVECS")).unwrap(),
            VectorFormat::Bvecs
        );
        assert_eq!(
            VectorFormat::from_path(Path::new("emb.npy")).unwrap(),
            VectorFormat::Npy
        );
        let (field, reason) = reason_of(VectorFormat::from_path(Path::new("x.ivecs")).unwrap_err());
        assert_eq!(field, "x.ivecs");
        assert!(
            reason.contains(".ivecs") && reason.contains(".fvecs, .bvecs, .npy"),
            "{reason}"
        );
        let (_, reason) = reason_of(VectorFormat::from_path(Path::new("vectors")).unwrap_err());
        assert!(reason.contains("no extension"), "{reason}");
    }

    #[test]
    fn empty_file_is_rejected() {
        let (field, reason) = fvecs_error(&[]);
        assert_eq!(field, "base.fvecs");
        assert!(reason.contains("zero vectors"), "{reason}");
        let (_, reason) = reason_of(parse_vectors("x.npy", VectorFormat::Npy, &[]).unwrap_err());
        assert!(reason.contains("zero vectors"), "{reason}");
        let bytes = npy_bytes(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }",
            &[],
        );
        let (_, reason) = reason_of(parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap_err());
        assert!(reason.contains("zero vectors"), "{reason}");
    }

    #[test]
    fn bad_dimensions_are_rejected() {
        let (field, reason) = fvecs_error(&0i32.to_le_bytes());
        assert_eq!(field, "base.fvecs: record 0 (byte 0)");
        assert!(reason.contains("dimension is 0"), "{reason}");
        let (_, reason) = fvecs_error(&70_000i32.to_le_bytes());
        assert!(
            reason.contains("70000") && reason.contains("65536"),
            "{reason}"
        );
        let (_, reason) = fvecs_error(&(-3i32).to_le_bytes());
        assert!(reason.contains("-3"), "{reason}");
    }

    #[test]
    fn wrong_dimension_names_the_record() {
        let mut bytes = write_fvecs(&vector_set(3, 4));
        // Record 2 starts at byte 2 * 20 = 40.
        bytes[40..44].copy_from_slice(&5i32.to_le_bytes());
        let (field, reason) = fvecs_error(&bytes);
        assert_eq!(field, "base.fvecs: record 2 (byte 40)");
        assert!(
            reason.contains("expected 4") && reason.contains("found 5"),
            "{reason}"
        );
    }

    #[test]
    fn truncation_says_how_many_bytes_are_missing() {
        let bytes = write_fvecs(&vector_set(3, 4));
        let (field, reason) = fvecs_error(&bytes[..bytes.len() - 6]);
        assert_eq!(field, "base.fvecs: record 2 (byte 40)");
        assert!(
            reason.contains("truncated") && reason.contains("6 bytes missing"),
            "{reason}"
        );

        let (field, reason) = fvecs_error(&bytes[..42]);
        assert_eq!(field, "base.fvecs: record 2 (byte 40)");
        assert!(
            reason.contains("header") && reason.contains("2 bytes missing"),
            "{reason}"
        );

        let (field, reason) = fvecs_error(&bytes[..3]);
        assert_eq!(field, "base.fvecs: record 0 (byte 0)");
        assert!(reason.contains("1 bytes missing"), "{reason}");
    }

    #[test]
    fn non_finite_values_name_record_and_component() {
        for (bad, shown) in [
            (f32::NAN, "NaN"),
            (f32::INFINITY, "inf"),
            (f32::NEG_INFINITY, "-inf"),
        ] {
            let mut vectors = vector_set(3, 4);
            vectors.data[4 + 3] = bad;
            let (field, reason) = fvecs_error(&write_fvecs(&vectors));
            assert_eq!(field, "base.fvecs: record 1 (byte 20)");
            assert!(
                reason.contains("component 3") && reason.contains(shown),
                "{reason}"
            );
        }
        // Finite, but squared distances would overflow.
        let mut vectors = vector_set(3, 4);
        vectors.data[2] = -1e18;
        let (field, reason) = fvecs_error(&write_fvecs(&vectors));
        assert_eq!(field, "base.fvecs: record 0 (byte 0)");
        assert!(
            reason.contains("component 2") && reason.contains("e17") && reason.contains("overflow"),
            "{reason}"
        );
        // A float64 that does not fit in float32.
        let data: Vec<u8> = [1.0f64, 1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bytes = npy_bytes(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
            &data,
        );
        let (field, reason) =
            reason_of(parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap_err());
        // The padded header takes 128 bytes.
        assert_eq!(field, "x.npy: record 0 (byte 128)");
        assert!(
            reason.contains("component 1") && reason.contains("overflows"),
            "{reason}"
        );
    }

    #[test]
    fn npy_errors() {
        let npy_error =
            |bytes: &[u8]| reason_of(parse_vectors("x.npy", VectorFormat::Npy, bytes).unwrap_err());
        let (field, reason) = npy_error(b"PK\x03\x04 not numpy at all");
        assert_eq!(field, "x.npy: npy header");
        assert!(reason.contains("magic"), "{reason}");

        let mut bytes = npy_bytes(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }",
            &[0; 4],
        );
        bytes[6] = 9;
        let (_, reason) = npy_error(&bytes);
        assert!(reason.contains("version 9.0"), "{reason}");

        let cases = [
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }",
                "dtype '>f4'",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 4), }",
                "dtype '<i8'",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }",
                "structured",
            ),
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }",
                "fortran_order",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (12,), }",
                "(12,) is 1-d",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }",
                "3-d",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }",
                "dimension is 0",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, }",
                "missing key 'shape'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)",
                "expected ','",
            ),
            ("['descr']", "not a dict"),
            (
                "{'descr': '<f4', 'fortran_order': maybe, 'shape': (3, 4)}",
                "maybe",
            ),
        ];
        for (dict, expected) in cases {
            let bytes = npy_bytes(1, dict, &f32_le(&[0.0; 12]));
            let (field, reason) = npy_error(&bytes);
            assert_eq!(field, "x.npy: npy header", "{dict}");
            assert!(reason.contains(expected), "{dict}: {reason}");
        }

        // Header length pointing past the end of the file.
        let mut bytes = npy_bytes(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }",
            &[],
        );
        bytes[8..10].copy_from_slice(&1000u16.to_le_bytes());
        let (_, reason) = npy_error(&bytes);
        assert!(reason.contains("truncated"), "{reason}");
    }

    #[test]
    fn npy_truncated_and_trailing_data() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
        let values = f32_le(&[1.0; 12]);
        let bytes = npy_bytes(1, header, &values[..40]);
        let (field, reason) =
            reason_of(parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap_err());
        // Row 2 starts at 128 (padded header) + 2 * 16 = 160; 8 of its 16 bytes are present.
        assert_eq!(field, "x.npy: record 2 (byte 160)");
        assert!(reason.contains("8 bytes missing"), "{reason}");

        let mut long = values.clone();
        long.extend_from_slice(&[0; 3]);
        let bytes = npy_bytes(1, header, &long);
        let (_, reason) = reason_of(parse_vectors("x.npy", VectorFormat::Npy, &bytes).unwrap_err());
        assert!(reason.contains("3 unexpected bytes"), "{reason}");
    }

    #[test]
    fn bvecs_truncated() {
        let mut bytes = 3i32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        bytes.extend_from_slice(&3i32.to_le_bytes());
        bytes.push(9);
        let (field, reason) =
            reason_of(parse_vectors("b.bvecs", VectorFormat::Bvecs, &bytes).unwrap_err());
        assert_eq!(field, "b.bvecs: record 1 (byte 7)");
        assert!(reason.contains("2 bytes missing"), "{reason}");
    }
}
