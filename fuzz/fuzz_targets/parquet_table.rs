//! Data parquet reader: `mulli_data::table::read_parquet` on arbitrary file contents, with a
//! fixed feature list covering every column kind (vector, scalar index, image, string), and
//! with a second, numeric list that matches the LeRobot fixture's columns under other dtypes
//! (so the casts are exercised on mutations of real files).
//!
//! Properties: never panics; a table that is returned is consistent (every column holds
//! exactly `table.len` rows, so the loader's `data[r*D..(r+1)*D]` slicing is in bounds).
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mulli_core::{DType, FeatureSpec};
use mulli_data::table::read_parquet;

fn feature_lists() -> &'static [Vec<FeatureSpec>; 2] {
    static LISTS: OnceLock<[Vec<FeatureSpec>; 2]> = OnceLock::new();
    LISTS.get_or_init(|| {
        [
            vec![
                FeatureSpec::new("action", DType::Float32, vec![3]),
                FeatureSpec::new("index", DType::Int64, vec![1]),
                FeatureSpec::new("cam", DType::Image, vec![8, 8, 3]),
                FeatureSpec::new("task", DType::String, vec![1]),
            ],
            vec![
                FeatureSpec::new("observation.state", DType::Float64, vec![2, 2]),
                FeatureSpec::new("action", DType::Float32, vec![3]),
                FeatureSpec::new("timestamp", DType::Float64, vec![1]),
                FeatureSpec::new("frame_index", DType::Int32, vec![1]),
                FeatureSpec::new("episode_index", DType::UInt8, vec![1]),
                FeatureSpec::new("task_index", DType::Bool, vec![1]),
                FeatureSpec::new("index", DType::Int64, vec![1]),
            ],
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new()
        .prefix("mulli-fuzz-")
        .suffix(".parquet")
        .tempfile()
        .expect("temp file");
    file.write_all(data).expect("write temp file");
    file.flush().expect("flush temp file");
    for list in feature_lists() {
        let features: Vec<&FeatureSpec> = list.iter().collect();
        let Ok(table) = read_parquet(file.path(), &features) else {
            continue;
        };
        for (name, col) in &table.columns {
            assert_eq!(col.len(), table.len, "column `{name}` has {} rows, table has {}", col.len(), table.len);
        }
        if table.len > 0 {
            let _ = table.slice(0, table.len);
            for col in table.columns.values() {
                let _ = col.value(table.len - 1);
                let _ = col.rows_f64(0, table.len);
            }
        }
    }
});
