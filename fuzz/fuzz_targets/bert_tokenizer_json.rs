//! Pretrained text encoder's file parsers: `mulli_policy::pretrained::parse_tokenizer`
//! (tokenizer.json, through the `tokenizers` crate) and `parse_config` (config.json) on
//! arbitrary bytes.
//!
//! Properties: never panics. A tokenizer that parses encodes a few strings (empty, ASCII,
//! Korean, the input itself as lossy UTF-8) without panicking, each into at most `max_len`
//! ids with one segment id per id. A config that parses has `hidden_size` divisible by
//! `num_attention_heads`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mulli_policy::pretrained::{parse_config, parse_tokenizer};

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = parse_config(data, Path::new("config.json")) {
        assert_eq!(
            config.hidden_size % config.num_attention_heads,
            0,
            "{config:?}"
        );
    }
    // The maximum length comes from the last byte, so small and odd limits get exercised
    // (0 and 1 cannot hold BERT's [CLS] and [SEP] and must be refused, not panic).
    let max_len = data.last().map_or(16, |&b| usize::from(b % 40));
    let Ok(tokenizer) = parse_tokenizer(data, Path::new("tokenizer.json"), max_len) else {
        return;
    };
    let own = String::from_utf8_lossy(data);
    for text in [
        "",
        "pick up the red cube, please!",
        "케첩을 냉장고에 넣어줘",
        &*own,
    ] {
        if let Ok(tokens) = tokenizer.encode(text) {
            assert!(
                tokens.ids.len() <= max_len,
                "{} ids > max_len {max_len}",
                tokens.ids.len()
            );
            assert_eq!(tokens.ids.len(), tokens.type_ids.len());
        }
    }
});
