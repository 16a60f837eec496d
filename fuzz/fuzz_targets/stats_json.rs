//! `meta/stats.json` / per-episode stats parser: `FeatureStats::from_json` on arbitrary JSON.
//!
//! Properties: never panics; whatever parses is written back by `to_json` in a form that
//! parses again with the same dimension.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mulli_data::stats::FeatureStats;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // stats.json maps feature names to stats objects: try the document and each member.
    check(&value);
    if let Some(obj) = value.as_object() {
        for v in obj.values() {
            check(v);
        }
    }
});

fn check(value: &serde_json::Value) {
    let Ok(stats) = FeatureStats::from_json(value) else {
        return;
    };
    let dim = stats.dim();
    let _ = FeatureStats::aggregate(&[&stats, &stats]);
    let written = stats.to_json();
    match FeatureStats::from_json(&written) {
        Ok(again) => assert_eq!(dim, again.dim(), "stats dimension changed in a round trip: {written}"),
        Err(e) => panic!("stats written by to_json() do not parse again: {e}\nwritten: {written}"),
    }
}
