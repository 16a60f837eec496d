//! A frozen pretrained BERT-family sentence encoder, loaded from a local directory.
//!
//! [`PretrainedTextEncoder`] turns an instruction into one fixed-size vector with a
//! HuggingFace BERT checkpoint (`sentence-transformers/all-MiniLM-L6-v2`, a multilingual
//! BERT for Korean, ...). It owns the whole path from text to vector: the `config.json` reader
//! ([`parse_config`]), the `tokenizer.json` reader ([`parse_tokenizer`], HuggingFace's own
//! `tokenizers` crate, so normalization and WordPiece match the Python side exactly), a BERT
//! encoder in burn with the weights of `model.safetensors`, and sentence-transformers' mean
//! pooling (the last hidden state averaged over real tokens, padding excluded).
//!
//! It is frozen: the weights never train, so it runs on a plain (non-autodiff) device, and each
//! distinct string is encoded once and cached. A dataset has a handful of instructions and the
//! policy asks for them at every step. Nothing is downloaded; the directory must hold
//! `config.json`, `tokenizer.json` and `model.safetensors`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::store::burn_pack::Tensor as StoredTensor;
use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::{DType, Device, Int, Tensor, TensorData, bf16, f16};
use serde_json::{Map, Value};
use tokenizers::{PostProcessor, TruncationParams};

use crate::PolicyError;

/// Files a pretrained encoder directory must hold.
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Strings run through the model at once on a cache miss. Bounds the attention scores'
/// memory (`batch × heads × len²`) for a long list of new instructions.
const BATCH: usize = 32;

fn fail(message: impl Into<String>) -> PolicyError {
    PolicyError::Pretrained(message.into())
}

/// The message a panic carried, if it was a string.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// At most `max` characters of `text`, for error messages about arbitrary input.
fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// The feed-forward activation (`hidden_act` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`: the exact, erf-based GELU (BERT, MiniLM).
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl HiddenAct {
    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            HiddenAct::Gelu => gelu(x),
            HiddenAct::GeluTanh => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        }
    }
}

/// The `config.json` fields the encoder uses (a HuggingFace `BertConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: HiddenAct,
}

/// Reads a HuggingFace `config.json` (BertConfig). `path` only names the file in errors.
///
/// Errors name the file and the field: a missing or mistyped size, `hidden_size` not divisible
/// by `num_attention_heads`, a `model_type` other than `bert`, a `position_embedding_type`
/// other than `absolute`, an unknown `hidden_act`. Never panics, whatever the bytes.
pub fn parse_config(json: &[u8], path: &Path) -> Result<BertConfig, PolicyError> {
    let file = path.display();
    let value: Value =
        serde_json::from_slice(json).map_err(|e| fail(format!("{file}: not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(fail(format!(
            "{file}: expected a JSON object (a BertConfig)"
        )));
    };

    let text_field = |name: &str, default: &str| -> Result<String, PolicyError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(fail(format!(
                "{file}: field `{name}` must be a string, found {}",
                excerpt(&other.to_string(), 40)
            ))),
        }
    };
    let model_type = text_field("model_type", "bert")?;
    if model_type != "bert" {
        return Err(fail(format!(
            "{file}: field `model_type` is {model_type:?}; only \"bert\" checkpoints are supported"
        )));
    }
    let position_type = text_field("position_embedding_type", "absolute")?;
    if position_type != "absolute" {
        return Err(fail(format!(
            "{file}: field `position_embedding_type` is {position_type:?}; only \"absolute\" is supported"
        )));
    }
    let hidden_act = match text_field("hidden_act", "gelu")?.as_str() {
        "gelu" => HiddenAct::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => HiddenAct::GeluTanh,
        "relu" => HiddenAct::Relu,
        other => {
            return Err(fail(format!(
                "{file}: field `hidden_act` is {:?}; supported: gelu, gelu_new, \
                 gelu_pytorch_tanh, gelu_fast, relu",
                excerpt(other, 40)
            )));
        }
    };

    let layer_norm_eps = match obj.get("layer_norm_eps") {
        None | Some(Value::Null) => 1e-12,
        Some(v) => match v.as_f64() {
            Some(eps) if eps.is_finite() && eps > 0.0 => eps,
            _ => {
                return Err(fail(format!(
                    "{file}: field `layer_norm_eps` must be a positive number, found {}",
                    excerpt(&v.to_string(), 40)
                )));
            }
        },
    };

    let config = BertConfig {
        vocab_size: size_field(obj, "vocab_size", None, 1, path)?,
        hidden_size: size_field(obj, "hidden_size", None, 1, path)?,
        num_hidden_layers: size_field(obj, "num_hidden_layers", None, 0, path)?,
        num_attention_heads: size_field(obj, "num_attention_heads", None, 1, path)?,
        intermediate_size: size_field(obj, "intermediate_size", None, 1, path)?,
        max_position_embeddings: size_field(obj, "max_position_embeddings", None, 1, path)?,
        type_vocab_size: size_field(obj, "type_vocab_size", Some(2), 1, path)?,
        layer_norm_eps,
        hidden_act,
    };
    if !config
        .hidden_size
        .is_multiple_of(config.num_attention_heads)
    {
        return Err(fail(format!(
            "{file}: field `hidden_size` = {} is not a multiple of `num_attention_heads` = {}",
            config.hidden_size, config.num_attention_heads
        )));
    }
    Ok(config)
}

/// A non-negative integer field of at least `min`; `default` when absent (None: required).
fn size_field(
    obj: &Map<String, Value>,
    name: &str,
    default: Option<usize>,
    min: usize,
    path: &Path,
) -> Result<usize, PolicyError> {
    let file = path.display();
    let value = match (obj.get(name), default) {
        (None | Some(Value::Null), Some(d)) => d,
        (None | Some(Value::Null), None) => {
            return Err(fail(format!("{file}: field `{name}` is missing")));
        }
        (Some(v), _) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                fail(format!(
                    "{file}: field `{name}` must be a non-negative integer, found {}",
                    excerpt(&v.to_string(), 40)
                ))
            })?,
    };
    if value < min {
        return Err(fail(format!(
            "{file}: field `{name}` = {value}: must be at least {min}"
        )));
    }
    Ok(value)
}

/// Token ids for one string, special tokens included, at most the tokenizer's `max_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    /// Segment ids (all 0 for a single sentence).
    pub type_ids: Vec<u32>,
}

/// A `tokenizer.json` (HuggingFace tokenizers format), truncating to a maximum length.
///
/// The `tokenizers` crate itself does the work (built without C code: fancy-regex instead of
/// Oniguruma), so BERT's normalizer (text cleaning, CJK splitting, lowercasing and accent
/// stripping as configured), its pre-tokenizer, WordPiece and the `[CLS] … [SEP]`
/// post-processor behave exactly as in Python. Other model types the crate reads (a
/// SentencePiece Unigram, as multilingual MiniLM ships) work the same way.
#[derive(Clone, Debug)]
pub struct PretrainedTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
}

/// Reads a `tokenizer.json`; `max_len` is the most tokens, special ones included, that
/// [`PretrainedTokenizer::encode`] returns (longer text is cut, keeping `[CLS]` and `[SEP]`).
/// Padding and truncation settings in the file are replaced. `path` only names the file in
/// errors. Never panics, whatever the bytes.
pub fn parse_tokenizer(
    json: &[u8],
    path: &Path,
    max_len: usize,
) -> Result<PretrainedTokenizer, PolicyError> {
    let file = path.display();
    // The `tokenizers` crate panics on some malformed files instead of returning an error
    // (`expect("Helper")` on a decoder cut short, `expect("Precompiled")` on a bad charsmap).
    // Checking the JSON syntax first makes the common case, a truncated file, a plain error;
    // `catch_unwind` makes the rest one too.
    serde_json::from_slice::<serde::de::IgnoredAny>(json)
        .map_err(|e| fail(format!("{file}: not a HuggingFace tokenizer.json: {e}")))?;
    let mut inner = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(json))
        .map_err(|panic| {
            fail(format!(
                "{file}: not a HuggingFace tokenizer.json: the tokenizers crate panicked \
                 reading it: {}",
                panic_message(&*panic)
            ))
        })?
        .map_err(|e| fail(format!("{file}: not a HuggingFace tokenizer.json: {e}")))?;
    let special = inner
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    // `tokenizers` subtracts the special tokens from the maximum length unchecked.
    if max_len == 0 || max_len < special {
        return Err(fail(format!(
            "{file}: a maximum length of {max_len} tokens is too short; its post-processor \
             adds {special} special tokens to every text"
        )));
    }
    inner
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..TruncationParams::default()
        }))
        .map_err(|e| fail(format!("{file}: cannot truncate to {max_len} tokens: {e}")))?;
    inner.with_padding(None);
    Ok(PretrainedTokenizer { inner, max_len })
}

impl PretrainedTokenizer {
    /// Token ids of `text` with the special tokens, cut to [`Self::max_len`].
    pub fn encode(&self, text: &str) -> Result<TokenizedText, PolicyError> {
        // A tokenizer.json that parsed may still make `tokenizers` panic (see parse_tokenizer).
        let encoding = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.encode(text, true)))
            .map_err(|panic| {
                fail(format!(
                    "tokenizing {:?}: the tokenizers crate panicked: {}",
                    excerpt(text, 60),
                    panic_message(&*panic)
                ))
            })?
            .map_err(|e| fail(format!("tokenizing {:?}: {e}", excerpt(text, 60))))?;
        Ok(TokenizedText {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// The tensors of `model.safetensors`, under HuggingFace's names, with or without the
/// `bert.` prefix that task heads (`BertForMaskedLM`, ...) add. Others (pooler, heads,
/// `position_ids`) are never read.
struct Weights {
    path: PathBuf,
    tensors: BTreeMap<String, StoredTensor>,
    prefix: &'static str,
}

impl Weights {
    fn open(path: &Path) -> Result<Self, PolicyError> {
        let mut store = SafetensorsStore::from_file(path);
        let tensors = store
            .get_all_tensors()
            .map_err(|e| {
                fail(format!(
                    "{}: not a readable safetensors file (truncated or corrupt?): {e}",
                    path.display()
                ))
            })?
            .clone();
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        Ok(Weights {
            path: path.to_path_buf(),
            tensors,
            prefix,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }

    /// The tensor `name` as f32, which must have exactly `shape`.
    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, PolicyError> {
        let file = self.path.display();
        let full = format!("{}{name}", self.prefix);
        let stored = self.tensors.get(&full).ok_or_else(|| {
            fail(format!(
                "{file}: tensor `{full}` is missing (expected shape {shape:?})"
            ))
        })?;
        if stored.shape.as_slice() != shape.as_slice() {
            return Err(fail(format!(
                "{file}: tensor `{full}` has shape {:?}, expected {shape:?} (from config.json)",
                stored.shape.as_slice()
            )));
        }
        let bytes = stored
            .to_bytes()
            .map_err(|e| fail(format!("{file}: cannot read tensor `{full}`: {e}")))?;
        let values = floats_from_le_bytes(&bytes, stored.dtype).ok_or_else(|| {
            fail(format!(
                "{file}: tensor `{full}` is {:?}; expected F32, F16, BF16 or F64",
                stored.dtype
            ))
        })?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(fail(format!(
                "{file}: tensor `{full}` holds {} values, its shape {shape:?} needs {}",
                values.len(),
                shape.iter().product::<usize>()
            )));
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    fn embedding(
        &self,
        name: &str,
        rows: usize,
        dim: usize,
        device: &Device,
    ) -> Result<Embedding, PolicyError> {
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(name, [rows, dim], device)?),
        })
    }

    /// A PyTorch `nn.Linear`: its weight is `[out, in]`, burn's `[in, out]`.
    fn linear(
        &self,
        base: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Linear, PolicyError> {
        let weight: Tensor<2> = self.tensor(&format!("{base}.weight"), [d_out, d_in], device)?;
        Ok(Linear {
            weight: Param::from_tensor(weight.transpose()),
            bias: Some(Param::from_tensor(self.tensor(
                &format!("{base}.bias"),
                [d_out],
                device,
            )?)),
        })
    }

    /// A `LayerNorm`; checkpoints converted from TensorFlow name its tensors gamma/beta.
    fn layer_norm(
        &self,
        base: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<LayerNorm, PolicyError> {
        let (scale, shift) =
            if !self.has(&format!("{base}.weight")) && self.has(&format!("{base}.gamma")) {
                ("gamma", "beta")
            } else {
                ("weight", "bias")
            };
        let mut norm = LayerNormConfig::new(dim).with_epsilon(eps).init(device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{base}.{scale}"), [dim], device)?);
        norm.beta = Some(Param::from_tensor(self.tensor(
            &format!("{base}.{shift}"),
            [dim],
            device,
        )?));
        Ok(norm)
    }
}

/// Little-endian floats of a supported dtype as f32; `None` for other dtypes.
pub fn floats_from_le_bytes(bytes: &[u8], dtype: DType) -> Option<Vec<f32>> {
    let values = match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    };
    Some(values)
}

/// One post-norm transformer layer (HuggingFace `BertLayer`).
#[derive(Module, Debug)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    #[module(skip)]
    act: HiddenAct,
}

impl BertLayer {
    fn load(
        weights: &Weights,
        index: usize,
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self, PolicyError> {
        let base = format!("encoder.layer.{index}");
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(BertLayer {
            query: weights.linear(&format!("{base}.attention.self.query"), h, h, device)?,
            key: weights.linear(&format!("{base}.attention.self.key"), h, h, device)?,
            value: weights.linear(&format!("{base}.attention.self.value"), h, h, device)?,
            attention_output: weights.linear(
                &format!("{base}.attention.output.dense"),
                h,
                h,
                device,
            )?,
            attention_norm: weights.layer_norm(
                &format!("{base}.attention.output.LayerNorm"),
                h,
                eps,
                device,
            )?,
            intermediate: weights.linear(&format!("{base}.intermediate.dense"), h, i, device)?,
            output: weights.linear(&format!("{base}.output.dense"), i, h, device)?,
            output_norm: weights.layer_norm(&format!("{base}.output.LayerNorm"), h, eps, device)?,
            heads: config.num_attention_heads,
            act: config.hidden_act,
        })
    }

    /// `x`: `[B, L, H]`; `mask_bias`: `[B, 1, 1, L]`, 0 for tokens and a large negative
    /// number for padding, added to the attention scores as HuggingFace does.
    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [b, len, hidden] = x.dims();
        let head_dim = hidden / self.heads;
        let split = |t: Tensor<3>| -> Tensor<4> {
            t.reshape([b, len, self.heads, head_dim]).swap_dims(1, 2)
        };
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask_bias;
        let context = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, len, hidden]);
        let x = self
            .attention_norm
            .forward(self.attention_output.forward(context) + x);
        let inner = self.act.apply(self.intermediate.forward(x.clone()));
        self.output_norm.forward(self.output.forward(inner) + x)
    }
}

/// HuggingFace `BertModel` without the pooler: embeddings, then the layers.
#[derive(Module, Debug)]
struct BertEncoder {
    word_embeddings: Embedding,
    position_embeddings: Param<Tensor<2>>,
    token_type_embeddings: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    fn load(weights: &Weights, config: &BertConfig, device: &Device) -> Result<Self, PolicyError> {
        let h = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(weights, i, config, device))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BertEncoder {
            word_embeddings: weights.embedding(
                "embeddings.word_embeddings.weight",
                config.vocab_size,
                h,
                device,
            )?,
            position_embeddings: Param::from_tensor(weights.tensor(
                "embeddings.position_embeddings.weight",
                [config.max_position_embeddings, h],
                device,
            )?),
            token_type_embeddings: weights.embedding(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                h,
                device,
            )?,
            embedding_norm: weights.layer_norm(
                "embeddings.LayerNorm",
                h,
                config.layer_norm_eps,
                device,
            )?,
            layers,
        })
    }

    /// Last hidden state `[B, L, H]` for token ids and segment ids `[B, L]` and a mask
    /// `[B, L]` (1 = token, 0 = padding; padding only at the end). `L` is at most
    /// `max_position_embeddings`.
    fn forward(&self, ids: Tensor<2, Int>, type_ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        let [b, len] = ids.dims();
        let positions = self
            .position_embeddings
            .val()
            .narrow(0, 0, len)
            .unsqueeze_dim(0);
        let mut x = self.embedding_norm.forward(
            self.word_embeddings.forward(ids)
                + positions
                + self.token_type_embeddings.forward(type_ids),
        );
        // (1 - mask) * most negative f32: what HuggingFace adds to the scores of padding.
        let mask_bias = mask
            .neg()
            .add_scalar(1.0)
            .mul_scalar(f32::MIN)
            .reshape([b, 1, 1, len]);
        for layer in &self.layers {
            x = layer.forward(x, mask_bias.clone());
        }
        x
    }
}

/// A frozen pretrained BERT sentence encoder (see the module docs).
#[derive(Debug)]
pub struct PretrainedTextEncoder {
    dir: PathBuf,
    config: BertConfig,
    tokenizer: PretrainedTokenizer,
    model: BertEncoder,
    device: Device,
    cache: HashMap<String, Vec<f32>>,
    model_runs: usize,
}

impl PretrainedTextEncoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` onto
    /// `device` (a plain device: the encoder never trains). Token sequences are cut to
    /// `max_position_embeddings`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, PolicyError> {
        let read = |name: &str| -> Result<(PathBuf, Vec<u8>), PolicyError> {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(fail(format!(
                    "{}: file not found (a pretrained text encoder directory holds {CONFIG_FILE}, \
                     {TOKENIZER_FILE} and {WEIGHTS_FILE})",
                    path.display()
                )));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| fail(format!("{}: cannot read: {e}", path.display())))?;
            Ok((path, bytes))
        };
        let (config_path, config_json) = read(CONFIG_FILE)?;
        let config = parse_config(&config_json, &config_path)?;
        let (tokenizer_path, tokenizer_json) = read(TOKENIZER_FILE)?;
        let tokenizer = parse_tokenizer(
            &tokenizer_json,
            &tokenizer_path,
            config.max_position_embeddings,
        )?;
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() {
            return Err(fail(format!(
                "{}: file not found (a pretrained text encoder directory holds {CONFIG_FILE}, \
                 {TOKENIZER_FILE} and {WEIGHTS_FILE})",
                weights_path.display()
            )));
        }
        let model = BertEncoder::load(&Weights::open(&weights_path)?, &config, device)?;
        Ok(PretrainedTextEncoder {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            model,
            device: device.clone(),
            cache: HashMap::new(),
            model_runs: 0,
        })
    }

    /// Size of each embedding (`hidden_size`).
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Most tokens per string, `[CLS]` and `[SEP]` included; longer text is cut.
    pub fn max_len(&self) -> usize {
        self.tokenizer.max_len()
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &PretrainedTokenizer {
        &self.tokenizer
    }

    /// The directory the encoder was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Distinct strings encoded so far (the cache's size).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Strings that went through the model, i.e. cache misses.
    pub fn model_runs(&self) -> usize {
        self.model_runs
    }

    /// One embedding of [`Self::dim`] values per string: the mean of the last hidden state
    /// over its tokens (padding excluded). Each distinct string is computed once, then served
    /// from the cache (which keeps every string it has seen: instructions are few); new
    /// strings are batched by length.
    pub fn encode(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PolicyError> {
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        for &text in texts {
            if !self.cache.contains_key(text) && seen.insert(text) {
                todo.push((text, self.tokenizer.encode(text)?));
            }
        }
        todo.sort_by_key(|(_, t)| t.ids.len());
        for chunk in todo.chunks(BATCH) {
            let embeddings = self.run(chunk)?;
            self.model_runs += chunk.len();
            for ((text, _), embedding) in chunk.iter().zip(embeddings) {
                self.cache.insert((*text).to_string(), embedding);
            }
        }
        Ok(texts.iter().map(|&t| self.cache[t].clone()).collect())
    }

    /// [`Self::encode`] as a `[N, dim]` tensor on `device`.
    pub fn encode_tensor(
        &mut self,
        texts: &[&str],
        device: &Device,
    ) -> Result<Tensor<2>, PolicyError> {
        let values = self.encode(texts)?.concat();
        Ok(Tensor::from_data(
            TensorData::new(values, [texts.len(), self.dim()]),
            device,
        ))
    }

    /// Mean-pooled embeddings of tokenized strings, padded to the longest.
    fn run(&self, batch: &[(&str, TokenizedText)]) -> Result<Vec<Vec<f32>>, PolicyError> {
        let c = &self.config;
        for (text, tokens) in batch {
            let bad_id = tokens.ids.iter().find(|&&id| id as usize >= c.vocab_size);
            let bad_type = tokens
                .type_ids
                .iter()
                .find(|&&t| t as usize >= c.type_vocab_size);
            if let Some(id) = bad_id {
                return Err(fail(format!(
                    "{}: tokenizer.json gives token id {id} for {:?}, but config.json's \
                     vocab_size is {}: the tokenizer does not belong to this model",
                    self.dir.display(),
                    excerpt(text, 60),
                    c.vocab_size
                )));
            }
            if let Some(t) = bad_type {
                return Err(fail(format!(
                    "{}: tokenizer.json gives segment id {t} for {:?}, but config.json's \
                     type_vocab_size is {}",
                    self.dir.display(),
                    excerpt(text, 60),
                    c.type_vocab_size
                )));
            }
        }
        let b = batch.len();
        let len = batch.iter().map(|(_, t)| t.ids.len()).max().unwrap_or(0);
        if len == 0 {
            // A tokenizer without special tokens gives nothing for "": the mean of no tokens.
            return Ok(vec![vec![0.0; c.hidden_size]; b]);
        }
        let mut ids = vec![0i64; b * len];
        let mut type_ids = vec![0i64; b * len];
        let mut mask = vec![0f32; b * len];
        for (row, (_, tokens)) in batch.iter().enumerate() {
            for (j, (&id, &t)) in tokens.ids.iter().zip(&tokens.type_ids).enumerate() {
                ids[row * len + j] = i64::from(id);
                type_ids[row * len + j] = i64::from(t);
                mask[row * len + j] = 1.0;
            }
        }
        let device = &self.device;
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, len]), device);
        let hidden = self.model.forward(
            Tensor::from_data(TensorData::new(ids, [b, len]), device),
            Tensor::from_data(TensorData::new(type_ids, [b, len]), device),
            mask.clone(),
        );
        let pooled = mean_pool(hidden, mask);
        let values: Vec<f32> = pooled
            .into_data()
            .try_into_vec()
            .map_err(|e| fail(format!("reading embeddings back from the device: {e:?}")))?;
        Ok(values.chunks(c.hidden_size).map(<[f32]>::to_vec).collect())
    }
}

/// Mean of `hidden` `[B, L, H]` over the positions where `mask` `[B, L]` is 1
/// (sentence-transformers' mean pooling: sum / max(count, 1e-9)).
fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let mask = mask.unsqueeze_dim::<3>(2);
    let count = mask.clone().sum_dim(1).clamp_min(1e-9);
    (hidden * mask).sum_dim(1).div(count).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(overrides: &[(&str, Value)]) -> Vec<u8> {
        let mut obj = serde_json::json!({
            "model_type": "bert",
            "vocab_size": 50,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 24,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
            "hidden_act": "gelu"
        });
        for (k, v) in overrides {
            obj[*k] = v.clone();
        }
        serde_json::to_vec(&obj).unwrap()
    }

    fn parse(overrides: &[(&str, Value)]) -> Result<BertConfig, PolicyError> {
        parse_config(&config_json(overrides), Path::new("dir/config.json"))
    }

    #[test]
    fn config_reads_a_bert_config() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c,
            BertConfig {
                vocab_size: 50,
                hidden_size: 32,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                intermediate_size: 64,
                max_position_embeddings: 24,
                type_vocab_size: 2,
                layer_norm_eps: 1e-12,
                hidden_act: HiddenAct::Gelu,
            }
        );
        let c = parse(&[
            ("hidden_act", "gelu_new".into()),
            ("layer_norm_eps", Value::Null),
        ])
        .unwrap();
        assert_eq!(c.hidden_act, HiddenAct::GeluTanh);
        assert_eq!(c.layer_norm_eps, 1e-12);
    }

    #[test]
    fn config_errors_name_the_file_and_field() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (
                vec![("hidden_size", "32".into())],
                "`hidden_size` must be a non-negative integer",
            ),
            (
                vec![("hidden_size", Value::Null)],
                "`hidden_size` is missing",
            ),
            (
                vec![("vocab_size", (-3).into())],
                "`vocab_size` must be a non-negative integer",
            ),
            (
                vec![("num_attention_heads", 0.into())],
                "`num_attention_heads` = 0: must be at least 1",
            ),
            (
                vec![("num_attention_heads", 5.into())],
                "`hidden_size` = 32 is not a multiple of `num_attention_heads` = 5",
            ),
            (
                vec![("hidden_act", "swish".into())],
                "`hidden_act` is \"swish\"",
            ),
            (
                vec![("hidden_act", 3.into())],
                "`hidden_act` must be a string",
            ),
            (
                vec![("model_type", "roberta".into())],
                "`model_type` is \"roberta\"",
            ),
            (
                vec![("position_embedding_type", "relative_key".into())],
                "`position_embedding_type`",
            ),
            (
                vec![("layer_norm_eps", (-1.0).into())],
                "`layer_norm_eps` must be a positive number",
            ),
        ];
        for (overrides, expected) in cases {
            let message = parse(&overrides).unwrap_err().to_string();
            assert!(message.contains("dir/config.json"), "{message}");
            assert!(
                message.contains(expected),
                "{message} should contain {expected}"
            );
        }
        let message = parse_config(b"{\"vocab_size\": 3,", Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("c.json: not valid JSON"), "{message}");
        let message = parse_config(b"[1, 2]", Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("expected a JSON object"), "{message}");
    }

    #[test]
    fn tokenizer_errors_are_errors() {
        for bytes in [&b""[..], b"{}", b"[]", b"\xff\xfe", b"{\"model\": 3}"] {
            let message = parse_tokenizer(bytes, Path::new("t.json"), 16)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("t.json: not a HuggingFace tokenizer.json"),
                "{message}"
            );
        }
    }

    #[test]
    fn floats_decode_every_supported_dtype() {
        let values = [1.5f32, -2.25, 0.0, 65504.0];
        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        let bf16_bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        let f64_bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        assert_eq!(
            floats_from_le_bytes(&f32_bytes, DType::F32).unwrap(),
            values
        );
        assert_eq!(
            floats_from_le_bytes(&f16_bytes, DType::F16).unwrap(),
            values
        );
        assert_eq!(
            floats_from_le_bytes(&f64_bytes, DType::F64).unwrap(),
            values
        );
        let bf = floats_from_le_bytes(&bf16_bytes, DType::BF16).unwrap();
        assert_eq!(&bf[..3], &values[..3]);
        assert_eq!(floats_from_le_bytes(&f32_bytes, DType::I32), None);
    }

    #[test]
    fn mean_pool_ignores_padding() {
        let device = Device::flex();
        // Two rows: [1, 2], [3, 4] real then a padded [100, 100]; and one real [5, 6].
        let hidden = Tensor::<3>::from_data(
            TensorData::new(
                vec![
                    1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0, 5.0, 6.0, 100.0, 100.0, 100.0, 100.0,
                ],
                [2, 3, 2],
            ),
            &device,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 0.0, 0.0], [2, 3]),
            &device,
        );
        let pooled: Vec<f32> = mean_pool(hidden, mask).into_data().try_into_vec().unwrap();
        assert_eq!(pooled, vec![2.0, 3.0, 5.0, 6.0]);
    }

    #[test]
    fn the_encoder_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<PretrainedTextEncoder>();
    }

    #[test]
    fn excerpt_cuts_on_characters() {
        assert_eq!(excerpt("케첩을 냉장고에", 3), "케첩을...");
        assert_eq!(excerpt("abc", 3), "abc");
    }
}
