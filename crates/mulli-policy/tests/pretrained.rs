//! The pretrained text encoder on checkpoints made here and by HuggingFace.
//!
//! Most tests write a tiny randomly initialised BERT (vocab ~60 with Korean syllables, hidden
//! 32, 2 layers, 4 heads, intermediate 64, 16 positions) to a temporary directory: config.json,
//! model.safetensors (written by hand from the format's spec, so the reader is checked against
//! the spec rather than against burn's writer) and tokenizer.json. The parity test reads
//! `tests/fixtures/tiny-bert/`, made by `scripts/make_tiny_bert_fixture.py` with HuggingFace
//! transformers, and must match its mean-pooled embeddings within 1e-4.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, f16};
use mulli_policy::PretrainedTextEncoder;
use mulli_policy::pretrained::{parse_config, parse_tokenizer};
use proptest::prelude::*;
use serde_json::{Value, json};

const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const INTERMEDIATE: usize = 64;
const POSITIONS: usize = 16;

const KOREAN: &str = "케첩을 냉장고에 넣어줘";
const ENGLISH: &str = "pick up the red cube";
const LONG: &str = "Put the red cube on the plate, then put the plate in the fridge, please!";

fn vocab() -> Vec<&'static str> {
    let mut v = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    v.extend([
        "pick", "up", "the", "red", "cube", "put", "Put", "in", "fridge", "please", "on", "plate",
        "then", "and", "a", "blue", "it", "##s", "##ed", "##ing", ".", ",", "!", "?",
    ]);
    v.extend([
        "케",
        "##첩",
        "##을",
        "냉장고",
        "##에",
        "넣",
        "##어",
        "##줘",
        "사과",
        "##를",
        "집어",
        "줘",
        "빨간",
        "상자",
        "##에서",
        "꺼내",
        "##줘요",
        "컵",
    ]);
    v.extend(["x", "y", "z", "##x", "##y", "##z", "1", "2", "##1", "##2"]);
    v
}

/// tokenizer.json as HuggingFace writes it for a cased BERT (multilingual-style: no
/// lowercasing, no accent stripping, so Hangul syllables stay whole).
fn tokenizer_json(vocab: &[&str]) -> Value {
    let specials: Vec<Value> = vocab[..5]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let ids: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": specials,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": false},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids}
    })
}

fn config_json(vocab_size: usize) -> Value {
    json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "pad_token_id": 0
    })
}

/// A deterministic stream of values in [-scale, scale] (xorshift64*).
struct Rng(u64);

impl Rng {
    fn values(&mut self, n: usize, center: f32, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let u =
                    (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                center + scale * (2.0 * u - 1.0)
            })
            .collect()
    }
}

/// The tensors of a tiny HuggingFace `BertModel` (plus its pooler), HF names and layouts
/// (`nn.Linear` weights are `[out, in]`).
fn bert_tensors(vocab_size: usize, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng(seed);
    let mut t = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, center: f32, scale: f32| {
        let n = shape.iter().product();
        t.push((name, shape, rng.values(n, center, scale)));
    };
    let (h, i) = (HIDDEN, INTERMEDIATE);
    add(
        "embeddings.word_embeddings.weight".into(),
        vec![vocab_size, h],
        0.0,
        1.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        vec![POSITIONS, h],
        0.0,
        0.5,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        vec![2, h],
        0.0,
        0.5,
    );
    add("embeddings.LayerNorm.weight".into(), vec![h], 1.0, 0.2);
    add("embeddings.LayerNorm.bias".into(), vec![h], 0.0, 0.2);
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for part in ["query", "key", "value"] {
            add(
                format!("{p}.attention.self.{part}.weight"),
                vec![h, h],
                0.0,
                0.4,
            );
            add(format!("{p}.attention.self.{part}.bias"), vec![h], 0.0, 0.2);
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            vec![h, h],
            0.0,
            0.3,
        );
        add(
            format!("{p}.attention.output.dense.bias"),
            vec![h],
            0.0,
            0.2,
        );
        add(
            format!("{p}.attention.output.LayerNorm.weight"),
            vec![h],
            1.0,
            0.2,
        );
        add(
            format!("{p}.attention.output.LayerNorm.bias"),
            vec![h],
            0.0,
            0.2,
        );
        add(
            format!("{p}.intermediate.dense.weight"),
            vec![i, h],
            0.0,
            0.3,
        );
        add(format!("{p}.intermediate.dense.bias"), vec![i], 0.0, 0.2);
        add(format!("{p}.output.dense.weight"), vec![h, i], 0.0, 0.2);
        add(format!("{p}.output.dense.bias"), vec![h], 0.0, 0.2);
        add(format!("{p}.output.LayerNorm.weight"), vec![h], 1.0, 0.2);
        add(format!("{p}.output.LayerNorm.bias"), vec![h], 0.0, 0.2);
    }
    add("pooler.dense.weight".into(), vec![h, h], 0.0, 0.3);
    add("pooler.dense.bias".into(), vec![h], 0.0, 0.1);
    t
}

#[derive(Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    F16,
}

/// A safetensors file from its spec: u64 LE header length, JSON header, raw LE data.
fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for &v in values {
            match dtype {
                Dtype::F32 => data.extend_from_slice(&v.to_le_bytes()),
                Dtype::F16 => data.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes()),
            }
        }
        let name_dtype = if dtype == Dtype::F32 { "F32" } else { "F16" };
        header.insert(
            name.clone(),
            json!({"dtype": name_dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    bytes
}

/// Writes a tiny BERT checkpoint directory; `edit` may change the tensors first.
fn write_bert(
    dir: &Path,
    dtype: Dtype,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let vocab = vocab();
    let mut tensors = bert_tensors(vocab.len(), 0x5eed_cafe);
    edit(&mut tensors);
    std::fs::write(
        dir.join("config.json"),
        config_json(vocab.len()).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        tokenizer_json(&vocab).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&tensors, dtype),
    )
    .unwrap();
    dir.to_path_buf()
}

fn tiny_bert() -> (tempfile::TempDir, PretrainedTextEncoder) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |_| {});
    let encoder = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    (tmp, encoder)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn load_err(dir: &Path) -> String {
    PretrainedTextEncoder::load(dir, &Device::flex())
        .unwrap_err()
        .to_string()
}

#[test]
fn encodes_one_vector_per_string() {
    let (_tmp, mut encoder) = tiny_bert();
    assert_eq!(encoder.dim(), HIDDEN);
    assert_eq!(encoder.max_len(), POSITIONS);
    let out = encoder.encode(&[ENGLISH, KOREAN, ""]).unwrap();
    assert_eq!(out.len(), 3);
    for v in &out {
        assert_eq!(v.len(), HIDDEN);
        assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
    }
    assert!(
        max_abs_diff(&out[0], &out[1]) > 1e-2,
        "different sentences, same embedding"
    );
    assert!(max_abs_diff(&out[1], &out[2]) > 1e-2);

    // Korean syllables are in the vocabulary: no [UNK] (id 1).
    let korean = encoder.tokenizer().encode(KOREAN).unwrap();
    assert_eq!(korean.ids.first(), Some(&2));
    assert_eq!(korean.ids.last(), Some(&3));
    assert!(!korean.ids.contains(&1), "{:?}", korean.ids);
    assert_eq!(encoder.tokenizer().encode("").unwrap().ids, vec![2, 3]);
}

#[test]
fn is_deterministic_across_loads() {
    let (_tmp, mut a) = tiny_bert();
    let (_tmp2, mut b) = tiny_bert();
    let texts = [KOREAN, ENGLISH, LONG];
    let first = a.encode(&texts).unwrap();
    assert_eq!(first, b.encode(&texts).unwrap());
    // And in another order and batch, from a fresh encoder.
    let (_tmp3, mut c) = tiny_bert();
    let reversed = c.encode(&[LONG, ENGLISH, KOREAN]).unwrap();
    for (x, y) in first.iter().zip(reversed.iter().rev()) {
        assert!(max_abs_diff(x, y) < 1e-5);
    }
}

#[test]
fn each_distinct_string_runs_through_the_model_once() {
    let (_tmp, mut encoder) = tiny_bert();
    let first = encoder.encode(&[ENGLISH, KOREAN, ENGLISH]).unwrap();
    assert_eq!(encoder.model_runs(), 2);
    assert_eq!(encoder.cache_len(), 2);
    assert_eq!(first[0], first[2]);
    let again = encoder.encode(&[KOREAN, ENGLISH]).unwrap();
    assert_eq!(encoder.model_runs(), 2, "cached strings were recomputed");
    assert_eq!(again[0], first[1]);
    assert_eq!(again[1], first[0]);
    encoder.encode(&[ENGLISH, LONG]).unwrap();
    assert_eq!(encoder.model_runs(), 3);
    assert_eq!(encoder.cache_len(), 3);
}

#[test]
fn padding_does_not_change_an_embedding() {
    let (_tmp, mut alone) = tiny_bert();
    let (_tmp2, mut batched) = tiny_bert();
    let single = alone.encode(&[KOREAN]).unwrap();
    // In a batch with a longer sentence, KOREAN is padded; the mask must hide the padding.
    let long_tokens = batched.tokenizer().encode(LONG).unwrap().ids.len();
    let short_tokens = batched.tokenizer().encode(KOREAN).unwrap().ids.len();
    assert!(
        long_tokens > short_tokens + 3,
        "{long_tokens} vs {short_tokens}"
    );
    let both = batched.encode(&[LONG, KOREAN, "x"]).unwrap();
    let diff = max_abs_diff(&single[0], &both[1]);
    assert!(diff < 1e-5, "padded embedding differs by {diff}");
}

#[test]
fn encode_tensor_is_n_by_dim() {
    let (_tmp, mut encoder) = tiny_bert();
    let device = Device::flex();
    let texts = [ENGLISH, KOREAN, ENGLISH, ""];
    let tensor = encoder.encode_tensor(&texts, &device).unwrap();
    assert_eq!(tensor.dims(), [4, HIDDEN]);
    let values: Vec<f32> = tensor.into_data().try_into_vec().unwrap();
    assert_eq!(values, encoder.encode(&texts).unwrap().concat());

    assert!(encoder.encode(&[]).unwrap().is_empty());
    assert_eq!(
        encoder.encode_tensor(&[], &device).unwrap().dims(),
        [0, HIDDEN]
    );
}

#[test]
fn long_text_is_cut_to_max_position_embeddings() {
    let (_tmp, mut encoder) = tiny_bert();
    let text = LONG.repeat(5);
    let tokens = encoder.tokenizer().encode(&text).unwrap();
    assert_eq!(tokens.ids.len(), POSITIONS);
    assert_eq!(
        (tokens.ids[0], tokens.ids[POSITIONS - 1]),
        (2, 3),
        "[CLS] ... [SEP] kept"
    );
    let out = encoder.encode(&[&text]).unwrap();
    assert!(out[0].iter().all(|x| x.is_finite()));
}

#[test]
fn bert_prefix_and_unknown_tensors_are_accepted() {
    let (_tmp, mut plain) = tiny_bert();
    let tmp = tempfile::tempdir().unwrap();
    // As BertForMaskedLM saves it: `bert.` prefix, a head and buffers the encoder ignores.
    let dir = write_bert(tmp.path(), Dtype::F32, |t| {
        for (name, _, _) in t.iter_mut() {
            *name = format!("bert.{name}");
        }
        t.push((
            "cls.predictions.bias".into(),
            vec![vocab().len()],
            vec![0.0; vocab().len()],
        ));
        t.push((
            "bert.embeddings.position_ids".into(),
            vec![1, POSITIONS],
            vec![0.0; POSITIONS],
        ));
    });
    let mut prefixed = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    let texts = [ENGLISH, KOREAN];
    assert_eq!(
        plain.encode(&texts).unwrap(),
        prefixed.encode(&texts).unwrap()
    );
}

#[test]
fn tensorflow_layer_norm_names_are_accepted() {
    let (_tmp, mut plain) = tiny_bert();
    let tmp = tempfile::tempdir().unwrap();
    // Checkpoints converted from TensorFlow call LayerNorm's weight and bias gamma and beta.
    let dir = write_bert(tmp.path(), Dtype::F32, |t| {
        for (name, _, _) in t.iter_mut() {
            if name.contains("LayerNorm") {
                *name = name.replace(".weight", ".gamma").replace(".bias", ".beta");
            }
        }
    });
    let mut renamed = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    assert_eq!(
        plain.encode(&[KOREAN]).unwrap(),
        renamed.encode(&[KOREAN]).unwrap()
    );
}

#[test]
fn half_precision_weights_load() {
    let (_tmp, mut full) = tiny_bert();
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F16, |_| {});
    let mut half = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    let texts = [ENGLISH, KOREAN];
    for (a, b) in full
        .encode(&texts)
        .unwrap()
        .iter()
        .zip(&half.encode(&texts).unwrap())
    {
        let diff = max_abs_diff(a, b);
        assert!(diff < 2e-2, "f16 weights differ from f32 by {diff}");
    }
}

#[test]
fn missing_files_are_named() {
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_bert(tmp.path(), Dtype::F32, |_| {});
        std::fs::remove_file(dir.join(file)).unwrap();
        let message = load_err(&dir);
        assert!(
            message.contains(&dir.join(file).display().to_string()),
            "{message}"
        );
        assert!(message.contains("file not found"), "{message}");
    }
    let message = load_err(Path::new("/nonexistent/encoder"));
    assert!(
        message.contains("/nonexistent/encoder/config.json"),
        "{message}"
    );
}

#[test]
fn truncated_or_corrupt_safetensors_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |_| {});
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let mut bad_header = bytes.clone();
    bad_header[12] = b'#';
    let mut huge_header = bytes.clone();
    huge_header[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let cases = [
        bytes[..bytes.len() / 2].to_vec(),
        bytes[..bytes.len() - 1].to_vec(),
        bytes[..100].to_vec(),
        bytes[..4].to_vec(),
        Vec::new(),
        bad_header,
        huge_header,
    ];
    for case in cases {
        std::fs::write(&path, &case).unwrap();
        let message = load_err(&dir);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("not a readable safetensors file"),
            "{message}"
        );
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |t| {
        let q = t
            .iter_mut()
            .find(|(n, _, _)| n == "encoder.layer.1.attention.self.query.weight")
            .unwrap();
        q.1 = vec![HIDDEN, HIDDEN - 1];
        q.2.truncate(HIDDEN * (HIDDEN - 1));
    });
    let message = load_err(&dir);
    assert!(
        message.contains("encoder.layer.1.attention.self.query.weight"),
        "{message}"
    );
    assert!(
        message.contains("has shape [32, 31], expected [32, 32]"),
        "{message}"
    );
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn a_missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |t| {
        t.retain(|(n, _, _)| n != "encoder.layer.1.output.LayerNorm.bias");
    });
    let message = load_err(&dir);
    assert!(
        message.contains("tensor `encoder.layer.1.output.LayerNorm.bias` is missing"),
        "{message}"
    );
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn a_malformed_config_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |_| {});
    let mut config = config_json(vocab().len());
    config["num_attention_heads"] = json!("four");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let message = load_err(&dir);
    assert!(message.contains("config.json"), "{message}");
    assert!(message.contains("`num_attention_heads`"), "{message}");
}

#[test]
fn a_tokenizer_from_another_model_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bert(tmp.path(), Dtype::F32, |t| {
        // A model whose vocabulary is smaller than the tokenizer's.
        let emb = t
            .iter_mut()
            .find(|(n, _, _)| n == "embeddings.word_embeddings.weight")
            .unwrap();
        emb.1 = vec![10, HIDDEN];
        emb.2.truncate(10 * HIDDEN);
    });
    let mut config = config_json(10);
    config["vocab_size"] = json!(10);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut encoder = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    let message = encoder.encode(&[KOREAN]).unwrap_err().to_string();
    assert!(message.contains("vocab_size is 10"), "{message}");
    // "" is only [CLS] [SEP], both below 10.
    assert!(encoder.encode(&[""]).is_ok());
}

/// `tokenizers` 0.22 `expect`s a valid Precompiled normalizer; that must come back as an error.
#[test]
fn a_tokenizer_json_that_makes_tokenizers_panic_is_an_error() {
    let mut json = tokenizer_json(&vocab());
    json["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": 3});
    let message = parse_tokenizer(json.to_string().as_bytes(), Path::new("tok.json"), 8)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("tok.json: not a HuggingFace tokenizer.json"),
        "{message}"
    );
}

/// What `fuzz/fuzz_targets/bert_tokenizer_json.rs` checks, on every prefix of the real files.
#[test]
fn parsers_never_panic_on_cut_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_bert(tmp.path(), Dtype::F32, |_| {});
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    for file in [
        tmp.path().join("tokenizer.json"),
        tmp.path().join("config.json"),
        fixture.join("tokenizer.json"),
        fixture.join("config.json"),
    ] {
        let bytes = std::fs::read(&file).unwrap();
        for end in 0..=bytes.len() {
            let data = &bytes[..end];
            let _ = parse_config(data, Path::new("config.json"));
            for max_len in [0, 1, 2, 5] {
                if let Ok(tokenizer) = parse_tokenizer(data, Path::new("tokenizer.json"), max_len) {
                    for text in ["", KOREAN, LONG] {
                        let tokens = tokenizer.encode(text).unwrap();
                        assert!(tokens.ids.len() <= max_len);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any string encodes to finite numbers, and the cache returns exactly what was computed.
    #[test]
    fn any_text_encodes(text in "\\PC{0,40}", korean in "[가-힣 ]{0,12}") {
        let (_tmp, mut encoder) = tiny_bert();
        let out = encoder.encode(&[&text, &korean]).unwrap();
        prop_assert!(out.iter().flatten().all(|x| x.is_finite()));
        prop_assert_eq!(out[0].len(), HIDDEN);
        let again = encoder.encode(&[&korean, &text]).unwrap();
        prop_assert_eq!(&again[0], &out[1]);
        prop_assert_eq!(&again[1], &out[0]);
    }
}

/// Numerical parity with HuggingFace transformers' `BertModel` + mean pooling.
#[test]
fn matches_huggingface_on_the_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let sentences = expected["sentences"].as_array().unwrap();
    let mut encoder = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
    assert_eq!(
        encoder.max_len() as u64,
        expected["max_len"].as_u64().unwrap()
    );

    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    // All at once (padded batch) ...
    let batched = encoder.encode(&texts).unwrap();
    let mut worst = 0f32;
    for (i, s) in sentences.iter().enumerate() {
        let ids: Vec<u32> = s["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            encoder.tokenizer().encode(texts[i]).unwrap().ids,
            ids,
            "{}",
            texts[i]
        );
        let want: Vec<f32> = s["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let diff = max_abs_diff(&batched[i], &want);
        assert!(
            diff < 1e-4,
            "{:?}: differs from HuggingFace by {diff}",
            texts[i]
        );
        worst = worst.max(diff);
        // ... and one at a time, from a fresh encoder.
        let mut fresh = PretrainedTextEncoder::load(&dir, &Device::flex()).unwrap();
        let diff = max_abs_diff(&fresh.encode(&[texts[i]]).unwrap()[0], &want);
        assert!(
            diff < 1e-4,
            "{:?} alone: differs from HuggingFace by {diff}",
            texts[i]
        );
        worst = worst.max(diff);
    }
    eprintln!("largest difference from HuggingFace: {worst:e}");
}
