//! `meta/info.json` parser: `DatasetInfo::parse` on arbitrary (lossily decoded) UTF-8.
//!
//! Properties: never panics; whatever parses survives a round trip through `to_json`
//! (re-parses, and to an equal value).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mulli_data::info::DatasetInfo;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("info.json");
    let Ok(info) = DatasetInfo::parse(path, &text) else {
        return;
    };
    // The helpers callers use right after loading must not panic either.
    let _ = info.user_features();
    let _ = info.video_keys();
    let _ = info.image_keys();
    let _ = info.data_file(0, 0);
    for key in info.video_keys() {
        let _ = info.video_file(&key, 1, 2);
    }

    let written = info.to_json().to_string();
    let again = match DatasetInfo::parse(path, &written) {
        Ok(again) => again,
        Err(e) => panic!("info.json written by to_json() does not parse again: {e}\nwritten: {written}"),
    };
    assert_eq!(info, again, "info.json changed in a to_json()/parse round trip\nwritten: {written}");
});
