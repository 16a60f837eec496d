//! Columnar frames in memory and their parquet form.
//!
//! A [`Table`] holds the rows of one or more data parquet files as typed, flat vectors (one
//! per feature), which is what the loader wants: a state of dim D at row r is
//! `data[r*D..(r+1)*D]`, no per-row allocation. Reading accepts the arrow types real datasets
//! use for a feature (scalar, list, large list, fixed-size list, nested lists for N-D, any
//! numeric width — cast to the declared dtype); writing produces what LeRobot writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, FixedSizeListArray, LargeBinaryArray,
    RecordBatch, StringArray, StructArray,
};
use arrow::datatypes::{
    DataType, Field, Fields, Float32Type, Float64Type, Int32Type, Int64Type, Schema, UInt8Type,
};
use mulli_core::{DType, FeatureSpec, Value};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{DataError, Result, io};

/// The values of one feature for many rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Bool(Vec<bool>, usize),
    U8(Vec<u8>, usize),
    I32(Vec<i32>, usize),
    I64(Vec<i64>, usize),
    F32(Vec<f32>, usize),
    F64(Vec<f64>, usize),
    Str(Vec<String>),
    /// Encoded image bytes (PNG/JPEG) per row, as in HF `Image` features.
    Image(Vec<Vec<u8>>),
}

impl Column {
    pub fn empty_for(spec: &FeatureSpec) -> Column {
        let w = spec.numel();
        match spec.dtype {
            DType::Bool => Column::Bool(Vec::new(), w),
            DType::UInt8 => Column::U8(Vec::new(), w),
            DType::Int32 => Column::I32(Vec::new(), w),
            DType::Int64 => Column::I64(Vec::new(), w),
            DType::Float32 => Column::F32(Vec::new(), w),
            DType::Float64 => Column::F64(Vec::new(), w),
            DType::String => Column::Str(Vec::new()),
            DType::Image | DType::Video => Column::Image(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Bool(v, w) => v.len() / w.max(&1),
            Column::U8(v, w) => v.len() / w.max(&1),
            Column::I32(v, w) => v.len() / w.max(&1),
            Column::I64(v, w) => v.len() / w.max(&1),
            Column::F32(v, w) => v.len() / w.max(&1),
            Column::F64(v, w) => v.len() / w.max(&1),
            Column::Str(v) => v.len(),
            Column::Image(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` as a core [`Value`] (images as their encoded bytes).
    pub fn value(&self, row: usize) -> Value {
        fn sl<T: Clone>(v: &[T], w: usize, r: usize) -> Vec<T> {
            v[r * w..(r + 1) * w].to_vec()
        }
        match self {
            Column::Bool(v, w) => Value::Bool(sl(v, *w, row)),
            Column::U8(v, w) => Value::U8(sl(v, *w, row)),
            Column::I32(v, w) => Value::I32(sl(v, *w, row)),
            Column::I64(v, w) => Value::I64(sl(v, *w, row)),
            Column::F32(v, w) => Value::F32(sl(v, *w, row)),
            Column::F64(v, w) => Value::F64(sl(v, *w, row)),
            Column::Str(v) => Value::Str(v[row].clone()),
            Column::Image(v) => Value::U8(v[row].clone()),
        }
    }

    /// Append one row; the caller has checked the value against the spec.
    pub fn push(&mut self, value: &Value) -> Result<()> {
        match (self, value) {
            (Column::Bool(c, _), Value::Bool(v)) => c.extend_from_slice(v),
            (Column::U8(c, _), Value::U8(v)) => c.extend_from_slice(v),
            (Column::I32(c, _), Value::I32(v)) => c.extend_from_slice(v),
            (Column::I64(c, _), Value::I64(v)) => c.extend_from_slice(v),
            (Column::F32(c, _), Value::F32(v)) => c.extend_from_slice(v),
            (Column::F64(c, _), Value::F64(v)) => c.extend_from_slice(v),
            (Column::Str(c), Value::Str(v)) => c.push(v.clone()),
            (Column::Image(c), Value::U8(v)) => c.push(v.clone()),
            (c, v) => {
                return Err(DataError::Invalid(format!(
                    "cannot store a {} value in a {} column",
                    v.type_name(),
                    c.type_name()
                )));
            }
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        match self {
            Column::Bool(..) => "bool",
            Column::U8(..) => "uint8",
            Column::I32(..) => "int32",
            Column::I64(..) => "int64",
            Column::F32(..) => "float32",
            Column::F64(..) => "float64",
            Column::Str(_) => "string",
            Column::Image(_) => "image",
        }
    }

    /// Rows `[from, to)` as a new column.
    pub fn slice(&self, from: usize, to: usize) -> Column {
        fn s<T: Clone>(v: &[T], w: usize, a: usize, b: usize) -> Vec<T> {
            v[a * w..b * w].to_vec()
        }
        match self {
            Column::Bool(v, w) => Column::Bool(s(v, *w, from, to), *w),
            Column::U8(v, w) => Column::U8(s(v, *w, from, to), *w),
            Column::I32(v, w) => Column::I32(s(v, *w, from, to), *w),
            Column::I64(v, w) => Column::I64(s(v, *w, from, to), *w),
            Column::F32(v, w) => Column::F32(s(v, *w, from, to), *w),
            Column::F64(v, w) => Column::F64(s(v, *w, from, to), *w),
            Column::Str(v) => Column::Str(v[from..to].to_vec()),
            Column::Image(v) => Column::Image(v[from..to].to_vec()),
        }
    }

    /// Append all rows of `other` (same type).
    pub fn extend(&mut self, other: &Column) -> Result<()> {
        match (self, other) {
            (Column::Bool(a, _), Column::Bool(b, _)) => a.extend_from_slice(b),
            (Column::U8(a, _), Column::U8(b, _)) => a.extend_from_slice(b),
            (Column::I32(a, _), Column::I32(b, _)) => a.extend_from_slice(b),
            (Column::I64(a, _), Column::I64(b, _)) => a.extend_from_slice(b),
            (Column::F32(a, _), Column::F32(b, _)) => a.extend_from_slice(b),
            (Column::F64(a, _), Column::F64(b, _)) => a.extend_from_slice(b),
            (Column::Str(a), Column::Str(b)) => a.extend_from_slice(b),
            (Column::Image(a), Column::Image(b)) => a.extend_from_slice(b),
            (a, b) => {
                return Err(DataError::Invalid(format!(
                    "cannot append a {} column to a {} column",
                    b.type_name(),
                    a.type_name()
                )));
            }
        }
        Ok(())
    }

    /// Values of rows `[from, to)` widened to f64, row-major (for statistics).
    pub fn rows_f64(&self, from: usize, to: usize) -> Vec<f64> {
        fn conv<T: Copy>(v: &[T], w: usize, a: usize, b: usize, f: impl Fn(T) -> f64) -> Vec<f64> {
            v[a * w..b * w].iter().map(|&x| f(x)).collect()
        }
        match self {
            Column::Bool(v, w) => conv(v, *w, from, to, |x| f64::from(u8::from(x))),
            Column::U8(v, w) => conv(v, *w, from, to, f64::from),
            Column::I32(v, w) => conv(v, *w, from, to, f64::from),
            Column::I64(v, w) => conv(v, *w, from, to, |x| x as f64),
            Column::F32(v, w) => conv(v, *w, from, to, f64::from),
            Column::F64(v, w) => conv(v, *w, from, to, |x| x),
            Column::Str(_) | Column::Image(_) => Vec::new(),
        }
    }
}

/// Rows of frames: LeRobot's index columns plus one [`Column`] per stored feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub len: usize,
    pub columns: BTreeMap<String, Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.get(name)
    }

    /// An int64 index column (`index`, `episode_index`, ...), by name.
    pub fn i64s(&self, name: &str) -> Option<&[i64]> {
        match self.columns.get(name)? {
            Column::I64(v, 1) => Some(v),
            _ => None,
        }
    }

    pub fn f32s(&self, name: &str) -> Option<&[f32]> {
        match self.columns.get(name)? {
            Column::F32(v, _) => Some(v),
            _ => None,
        }
    }

    /// Append all rows of `other`, which must have the same columns.
    pub fn append(&mut self, other: Table) -> Result<()> {
        if self.columns.is_empty() {
            *self = other;
            return Ok(());
        }
        for (name, col) in &mut self.columns {
            let o = other.columns.get(name).ok_or_else(|| {
                DataError::Invalid(format!("column `{name}` missing from appended rows"))
            })?;
            col.extend(o)?;
        }
        self.len += other.len;
        Ok(())
    }

    pub fn slice(&self, from: usize, to: usize) -> Table {
        Table {
            len: to - from,
            columns: self
                .columns
                .iter()
                .map(|(k, c)| (k.clone(), c.slice(from, to)))
                .collect(),
        }
    }
}

/// Read the given features (everything but `video`) from a parquet file.
pub fn read_parquet(path: &Path, features: &[&FeatureSpec]) -> Result<Table> {
    let pq = |e: &dyn std::fmt::Display| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = crate::fsutil::open_existing(path, "the dataset's metadata")?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| pq(&format!("not a readable parquet file: {e}")))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| pq(&e))?;
    let mut table = Table::default();
    for f in features {
        table.columns.insert(f.name.clone(), Column::empty_for(f));
    }
    for batch in reader {
        let batch = batch.map_err(|e| pq(&format!("corrupt data: {e}")))?;
        for f in features {
            let col = batch
                .column_by_name(&f.name)
                .ok_or_else(|| DataError::Column {
                    path: path.to_owned(),
                    column: f.name.clone(),
                    message: format!(
                        "missing (info.json declares it as {} {:?})",
                        f.dtype, f.shape
                    ),
                })?;
            let target = table.columns.get_mut(&f.name).expect("inserted above");
            append_arrow(target, col, f).map_err(|message| DataError::Column {
                path: path.to_owned(),
                column: f.name.clone(),
                message,
            })?;
        }
        table.len += batch.num_rows();
    }
    Ok(table)
}

/// Unwrap any list nesting down to the leaf values, checking no row is null and that each
/// row holds exactly `numel` leaves.
fn leaf_values(col: &ArrayRef, numel: usize) -> std::result::Result<ArrayRef, String> {
    let rows = col.len();
    if col.null_count() > 0 {
        let row = (0..rows).find(|&r| col.is_null(r)).unwrap_or(0);
        return Err(format!("row {row} is null"));
    }
    let mut cur = col.clone();
    loop {
        cur = match cur.data_type() {
            DataType::List(_) => {
                let l = cur.as_list::<i32>();
                let (a, b) = (
                    l.value_offsets()[0] as usize,
                    *l.value_offsets().last().unwrap_or(&0) as usize,
                );
                l.values().slice(a, b - a)
            }
            DataType::LargeList(_) => {
                let l = cur.as_list::<i64>();
                let (a, b) = (
                    l.value_offsets()[0] as usize,
                    *l.value_offsets().last().unwrap_or(&0) as usize,
                );
                l.values().slice(a, b - a)
            }
            DataType::FixedSizeList(_, n) => {
                let l = cur.as_fixed_size_list();
                let n = *n as usize;
                l.values().slice(l.offset() * n, l.len() * n)
            }
            _ => break,
        };
        if cur.null_count() > 0 {
            return Err("contains null values inside a list".into());
        }
    }
    if cur.len() != rows * numel {
        return Err(format!(
            "expected {numel} values per row ({} in {rows} rows), found {} (a row has the wrong length)",
            rows * numel,
            cur.len()
        ));
    }
    Ok(cur)
}

fn cast_to(values: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if values.data_type() == to {
        return Ok(values.clone());
    }
    let numeric = |t: &DataType| t.is_numeric() || matches!(t, DataType::Boolean);
    if !numeric(values.data_type()) {
        return Err(format!(
            "stored as {}, expected numbers of type {to}",
            values.data_type()
        ));
    }
    arrow::compute::cast(values, to)
        .map_err(|e| format!("cannot convert {} to {to}: {e}", values.data_type()))
}

fn append_arrow(
    target: &mut Column,
    col: &ArrayRef,
    spec: &FeatureSpec,
) -> std::result::Result<(), String> {
    let numel = spec.numel();
    match target {
        Column::Str(out) => {
            let arr = arrow::compute::cast(col, &DataType::Utf8)
                .map_err(|e| format!("expected strings, got {}: {e}", col.data_type()))?;
            let s: &StringArray = arr.as_string();
            out.extend((0..s.len()).map(|i| {
                if s.is_null(i) {
                    String::new()
                } else {
                    s.value(i).to_owned()
                }
            }));
        }
        Column::Image(out) => append_images(out, col)?,
        Column::Bool(out, _) => {
            let v = cast_to(&leaf_values(col, numel)?, &DataType::Boolean)?;
            let b: &BooleanArray = v.as_boolean();
            out.extend(b.iter().map(|x| x.unwrap_or(false)));
        }
        Column::U8(out, _) => out.extend_from_slice(
            cast_to(&leaf_values(col, numel)?, &DataType::UInt8)?
                .as_primitive::<UInt8Type>()
                .values(),
        ),
        Column::I32(out, _) => out.extend_from_slice(
            cast_to(&leaf_values(col, numel)?, &DataType::Int32)?
                .as_primitive::<Int32Type>()
                .values(),
        ),
        Column::I64(out, _) => out.extend_from_slice(
            cast_to(&leaf_values(col, numel)?, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .values(),
        ),
        Column::F32(out, _) => out.extend_from_slice(
            cast_to(&leaf_values(col, numel)?, &DataType::Float32)?
                .as_primitive::<Float32Type>()
                .values(),
        ),
        Column::F64(out, _) => out.extend_from_slice(
            cast_to(&leaf_values(col, numel)?, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .values(),
        ),
    }
    Ok(())
}

fn append_images(out: &mut Vec<Vec<u8>>, col: &ArrayRef) -> std::result::Result<(), String> {
    let bytes_of = |arr: &ArrayRef, out: &mut Vec<Vec<u8>>| -> std::result::Result<(), String> {
        match arr.data_type() {
            DataType::Binary => {
                let b: &BinaryArray = arr.as_binary();
                out.extend((0..b.len()).map(|i| {
                    if b.is_null(i) {
                        Vec::new()
                    } else {
                        b.value(i).to_vec()
                    }
                }));
            }
            DataType::LargeBinary => {
                let b: &LargeBinaryArray = arr.as_binary();
                out.extend((0..b.len()).map(|i| {
                    if b.is_null(i) {
                        Vec::new()
                    } else {
                        b.value(i).to_vec()
                    }
                }));
            }
            t => return Err(format!("image bytes stored as {t}, expected binary")),
        }
        Ok(())
    };
    match col.data_type() {
        DataType::Struct(_) => {
            let s: &StructArray = col.as_struct();
            let bytes = s.column_by_name("bytes").ok_or(
                "image struct has no `bytes` field (images stored by path only are not supported)",
            )?;
            bytes_of(bytes, out)
        }
        _ => bytes_of(col, out),
    }
}

/// The arrow type LeRobot (via HF `datasets`) uses for a feature.
pub fn arrow_type(spec: &FeatureSpec) -> DataType {
    let leaf = match spec.dtype {
        DType::Bool => DataType::Boolean,
        DType::UInt8 => DataType::UInt8,
        DType::Int32 => DataType::Int32,
        DType::Int64 => DataType::Int64,
        DType::Float32 => DataType::Float32,
        DType::Float64 => DataType::Float64,
        DType::String => return DataType::Utf8,
        DType::Image | DType::Video => return image_struct_type(),
    };
    if spec.shape == [1] {
        return leaf;
    }
    // N-D arrays nest fixed-size lists, outermost axis first.
    let mut t = leaf;
    for &d in spec.shape.iter().rev() {
        t = DataType::FixedSizeList(Arc::new(Field::new("element", t, true)), d as i32);
    }
    t
}

fn image_struct_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]))
}

fn to_arrow(col: &Column, spec: &FeatureSpec) -> Result<ArrayRef> {
    use arrow::array::{Float32Array, Float64Array, Int32Array, Int64Array, UInt8Array};
    let leaf: ArrayRef = match col {
        Column::Bool(v, _) => Arc::new(BooleanArray::from(v.clone())),
        Column::U8(v, _) => Arc::new(UInt8Array::from(v.clone())),
        Column::I32(v, _) => Arc::new(Int32Array::from(v.clone())),
        Column::I64(v, _) => Arc::new(Int64Array::from(v.clone())),
        Column::F32(v, _) => Arc::new(Float32Array::from(v.clone())),
        Column::F64(v, _) => Arc::new(Float64Array::from(v.clone())),
        Column::Str(v) => return Ok(Arc::new(StringArray::from(v.clone()))),
        Column::Image(v) => {
            let bytes = BinaryArray::from_iter_values(v.iter());
            let paths = StringArray::from(vec![None::<&str>; v.len()]);
            let DataType::Struct(fields) = image_struct_type() else {
                unreachable!()
            };
            return Ok(Arc::new(StructArray::new(
                fields,
                vec![Arc::new(bytes), Arc::new(paths)],
                None,
            )));
        }
    };
    if spec.shape == [1] {
        return Ok(leaf);
    }
    let mut arr = leaf;
    for &d in spec.shape.iter().rev() {
        let field = Arc::new(Field::new("element", arr.data_type().clone(), true));
        arr = Arc::new(
            FixedSizeListArray::try_new(field, d as i32, arr, None)
                .map_err(|e| DataError::Invalid(format!("feature `{}`: {e}", spec.name)))?,
        );
    }
    Ok(arr)
}

/// Write `table` (columns in `features` order) as a parquet file at `path` (not atomic; the
/// caller writes to a temp path and commits). `hf_features` is the HF `datasets` schema
/// metadata so Python's `datasets` restores the exact feature types.
pub fn write_parquet(
    path: &Path,
    table: &Table,
    features: &[&FeatureSpec],
    hf_features: Option<String>,
) -> Result<u64> {
    let mut fields = Vec::with_capacity(features.len());
    let mut arrays = Vec::with_capacity(features.len());
    for f in features {
        let col = table
            .columns
            .get(&f.name)
            .ok_or_else(|| DataError::Invalid(format!("no column for feature `{}`", f.name)))?;
        fields.push(Field::new(&f.name, arrow_type(f), true));
        arrays.push(to_arrow(col, f)?);
    }
    let mut schema = Schema::new(fields);
    if let Some(meta) = hf_features {
        schema = schema.with_metadata(std::collections::HashMap::from([(
            "huggingface".to_owned(),
            meta,
        )]));
    }
    let batch = RecordBatch::try_new(Arc::new(schema), arrays).map_err(|e| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(100_000))
        .build();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| {
        DataError::Parquet {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    w.write(&batch).map_err(|e| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let file = w.into_inner().map_err(|e| DataError::Parquet {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    file.sync_all().map_err(io(path))?;
    Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
}
