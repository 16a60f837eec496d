//! Property: for any dtype and shape, write → read gives back exactly what was written.

use mulli_core::{DType, FeatureSpec, Features, Frame, Value};
use mulli_data::{Dataset, DatasetWriter, WriteMode, WriterOptions};
use proptest::prelude::*;

fn value_strategy(dtype: DType, n: usize) -> BoxedStrategy<Value> {
    match dtype {
        DType::Bool => prop::collection::vec(any::<bool>(), n)
            .prop_map(Value::Bool)
            .boxed(),
        DType::UInt8 => prop::collection::vec(any::<u8>(), n)
            .prop_map(Value::U8)
            .boxed(),
        DType::Int32 => prop::collection::vec(any::<i32>(), n)
            .prop_map(Value::I32)
            .boxed(),
        DType::Int64 => prop::collection::vec(any::<i64>(), n)
            .prop_map(Value::I64)
            .boxed(),
        // Finite floats: NaN != NaN would make equality meaningless, not the format wrong.
        DType::Float32 => prop::collection::vec(-1e30f32..1e30, n)
            .prop_map(Value::F32)
            .boxed(),
        DType::Float64 => prop::collection::vec(-1e300f64..1e300, n)
            .prop_map(Value::F64)
            .boxed(),
        DType::String => "\\PC{0,12}".prop_map(Value::Str).boxed(),
        DType::Image | DType::Video => unreachable!(),
    }
}

/// (features as (dtype, shape), episode lengths, value seed)
type Case = (Vec<(DType, Vec<usize>)>, Vec<usize>, u64);

fn case() -> impl Strategy<Value = Case> {
    let dtype = prop::sample::select(vec![
        DType::Bool,
        DType::UInt8,
        DType::Int32,
        DType::Int64,
        DType::Float32,
        DType::Float64,
        DType::String,
    ]);
    let shape = prop::collection::vec(1usize..4, 1..3);
    (
        prop::collection::vec((dtype, shape), 1..4),
        prop::collection::vec(1usize..5, 1..3),
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn write_then_read_is_exact((feats, episodes, seed) in case()) {
        let mut features = Features::new();
        for (i, (d, shape)) in feats.iter().enumerate() {
            let shape = if *d == DType::String { vec![1] } else { shape.clone() };
            let f = FeatureSpec::new(format!("f{i}"), *d, shape);
            features.insert(f.name.clone(), f);
        }
        // Generate the frames from the seed with proptest's own RNG for reproducibility.
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed.to_le_bytes().repeat(4)),
        );
        let mut written: Vec<Frame> = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        let mut w = DatasetWriter::create(dir.path(), &features, WriterOptions { fps: 15, mode: WriteMode::Create, ..Default::default() }).unwrap();
        for (e, &len) in episodes.iter().enumerate() {
            for _ in 0..len {
                let mut f = Frame::new(format!("task {}", e % 2));
                for (name, spec) in &features {
                    let v = value_strategy(spec.dtype, spec.numel()).new_tree(&mut runner).unwrap().current();
                    f.values.insert(name.clone(), v);
                }
                w.add_frame(&f).unwrap();
                written.push(f);
            }
            w.save_episode().unwrap();
        }
        w.finalize().unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        prop_assert_eq!(ds.len(), written.len());
        for (row, f) in written.iter().enumerate() {
            prop_assert_eq!(ds.task_of_row(row), f.task.as_str());
            for (name, v) in &f.values {
                prop_assert_eq!(&ds.table.column(name).unwrap().value(row), v, "feature {} row {}", name, row);
            }
        }
        let problems = mulli_data::validate::validate(&ds, &mut |_, _| {}).unwrap();
        prop_assert!(problems.is_empty(), "validate found: {:?}", problems);
    }
}
