//! The VLA model, first cut: a small GroupNorm CNN per camera (shared weights plus a learned
//! camera embedding), a byte-level language encoder (embedding + position, masked mean
//! pool), a proprio projection, an MLP fusion, and an ACT-style action-chunk head (L1).
//! Transformer fusion and the flow-matching head come next (issue 4).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, Relu,
};
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::tokenizer::VOCAB;

/// Sizes of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VlaConfig {
    pub cameras: usize,
    /// Square input images (pixels per side).
    pub image_size: usize,
    pub state_dim: usize,
    pub action_dim: usize,
    /// Actions predicted per step (the chunk H).
    pub chunk: usize,
    /// Tokens per instruction (see [`crate::ByteTokenizer`]).
    pub text_len: usize,
    pub d_model: usize,
    pub conv_channels: [usize; 3],
}

impl Default for VlaConfig {
    fn default() -> Self {
        Self {
            cameras: 2,
            image_size: 96,
            state_dim: 15,
            action_dim: 7,
            chunk: 10,
            text_len: 64,
            d_model: 128,
            conv_channels: [32, 64, 64],
        }
    }
}

impl VlaConfig {
    pub fn validate(&self) -> Result<(), PolicyError> {
        let checks = [
            ("cameras", self.cameras, 1),
            ("image_size", self.image_size, 16),
            ("state_dim", self.state_dim, 1),
            ("action_dim", self.action_dim, 1),
            ("chunk", self.chunk, 1),
            ("text_len", self.text_len, 2),
            ("d_model", self.d_model, 8),
        ];
        for (name, value, min) in checks {
            if value < min {
                return Err(PolicyError::Config(format!(
                    "{name} = {value}: must be at least {min}"
                )));
            }
        }
        if let Some(c) = self.conv_channels.iter().find(|&&c| c == 0 || c % 8 != 0) {
            return Err(PolicyError::Config(format!(
                "conv_channels contains {c}: each must be a positive multiple of 8 (GroupNorm groups)"
            )));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv2d,
    norm: GroupNorm,
    act: Relu,
}

impl ConvBlock {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([2, 2])
                .init(device),
            norm: GroupNormConfig::new(8, c_out).init(device),
            act: Relu::new(),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.act.forward(self.norm.forward(self.conv.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct Vla {
    blocks: Vec<ConvBlock>,
    image_proj: Linear,
    camera_embedding: Param<Tensor<2>>,
    tokens: Embedding,
    positions: Param<Tensor<2>>,
    text_proj: Linear,
    state_proj: Linear,
    fuse1: Linear,
    fuse2: Linear,
    head: Linear,
    act: Relu,
    cameras: usize,
    chunk: usize,
    action_dim: usize,
}

/// One batch of model inputs: normalized images in [0, 1] as `[B, cameras, 3, H, W]`, token
/// ids `[B, text_len]` with a mask of real tokens `[B, text_len]` (1 = token, 0 = pad), and
/// normalized state `[B, state_dim]`.
#[derive(Clone, Debug)]
pub struct VlaInput {
    pub images: Tensor<5>,
    pub tokens: Tensor<2, Int>,
    pub token_mask: Tensor<2>,
    pub state: Tensor<2>,
}

impl Vla {
    pub fn new(config: &VlaConfig, device: &Device) -> Result<Self, PolicyError> {
        config.validate()?;
        let [c1, c2, c3] = config.conv_channels;
        let d = config.d_model;
        let fused = d * (config.cameras + 2);
        Ok(Vla {
            blocks: vec![
                ConvBlock::new(3, c1, device),
                ConvBlock::new(c1, c2, device),
                ConvBlock::new(c2, c3, device),
            ],
            image_proj: LinearConfig::new(c3, d).init(device),
            camera_embedding: Param::from_tensor(Tensor::random(
                [config.cameras, d],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            tokens: EmbeddingConfig::new(VOCAB, d).init(device),
            positions: Param::from_tensor(Tensor::random(
                [config.text_len, d],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            text_proj: LinearConfig::new(d, d).init(device),
            state_proj: LinearConfig::new(config.state_dim, d).init(device),
            fuse1: LinearConfig::new(fused, 4 * d).init(device),
            fuse2: LinearConfig::new(4 * d, 4 * d).init(device),
            head: LinearConfig::new(4 * d, config.chunk * config.action_dim).init(device),
            act: Relu::new(),
            cameras: config.cameras,
            chunk: config.chunk,
            action_dim: config.action_dim,
        })
    }

    /// Normalized action chunk `[B, chunk, action_dim]`.
    pub fn forward(&self, input: VlaInput) -> Tensor<3> {
        let [b, cams, ch, h, w] = input.images.dims();
        // All cameras through the shared encoder at once, then split back per camera.
        let mut x = input.images.reshape([b * cams, ch, h, w]);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let pooled: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        let d = self.camera_embedding.dims()[1];
        let cams_feat = self.image_proj.forward(pooled).reshape([b, cams, d])
            + self.camera_embedding.val().unsqueeze_dim(0);
        let cams_feat: Tensor<2> = cams_feat.reshape([b, cams * d]);

        let [_, len] = input.tokens.dims();
        let emb = self.tokens.forward(input.tokens)
            + self.positions.val().narrow(0, 0, len).unsqueeze_dim(0);
        let mask = input.token_mask.unsqueeze_dim::<3>(2);
        let count = mask.clone().sum_dim(1).clamp_min(1.0);
        let text: Tensor<2> = (emb * mask).sum_dim(1).div(count).flatten(1, 2);
        let text = self.act.forward(self.text_proj.forward(text));

        let state = self.act.forward(self.state_proj.forward(input.state));
        let fused = Tensor::cat(vec![cams_feat, text, state], 1);
        let y = self.act.forward(self.fuse1.forward(fused));
        let y = self.act.forward(self.fuse2.forward(y));
        self.head
            .forward(y)
            .reshape([b, self.chunk, self.action_dim])
    }

    pub fn cameras(&self) -> usize {
        self.cameras
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ByteTokenizer;
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::TensorData;

    fn tiny() -> VlaConfig {
        VlaConfig {
            image_size: 32,
            chunk: 4,
            text_len: 16,
            d_model: 32,
            conv_channels: [8, 16, 16],
            ..VlaConfig::default()
        }
    }

    fn batch(config: &VlaConfig, b: usize, device: &Device) -> VlaInput {
        let s = config.image_size;
        let tok = ByteTokenizer::new(config.text_len);
        let texts = ["open the drawer", "서랍을 열어줘"];
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for i in 0..b {
            let (t, n) = tok.encode(texts[i % 2]);
            ids.extend(t.iter().map(|&v| v as i64));
            mask.extend((0..config.text_len).map(|k| if k < n { 1.0f32 } else { 0.0 }));
        }
        VlaInput {
            images: Tensor::random(
                [b, config.cameras, 3, s, s],
                Distribution::Uniform(0.0, 1.0),
                device,
            ),
            tokens: Tensor::from_data(TensorData::new(ids, [b, config.text_len]), device),
            token_mask: Tensor::from_data(TensorData::new(mask, [b, config.text_len]), device),
            state: Tensor::random(
                [b, config.state_dim],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
        }
    }

    #[test]
    fn forward_gives_an_action_chunk_per_sample() {
        let device = Device::flex();
        let config = tiny();
        let model = Vla::new(&config, &device).unwrap();
        let out = model.forward(batch(&config, 3, &device));
        assert_eq!(out.dims(), [3, config.chunk, config.action_dim]);
        let values: Vec<f32> = out.into_data().try_to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_configs_are_errors() {
        let device = Device::flex();
        let e = Vla::new(&VlaConfig { chunk: 0, ..tiny() }, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("chunk = 0"), "{e}");
        let e = Vla::new(
            &VlaConfig {
                conv_channels: [8, 12, 16],
                ..tiny()
            },
            &device,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("12"), "{e}");
    }

    #[test]
    fn training_steps_fit_a_fixed_batch() {
        let device = Device::flex().autodiff();
        let config = tiny();
        let mut model = Vla::new(&config, &device).unwrap();
        let mut opt = AdamWConfig::new().init();
        let target = Tensor::<3>::random(
            [4, config.chunk, config.action_dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let input = batch(&config, 4, &device);
        let mut losses = Vec::new();
        for _ in 0..40 {
            let input = input.clone();
            let loss = (model.forward(input) - target.clone()).abs().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(3e-3, model, grads);
            losses.push(loss.into_scalar::<f32>());
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(
            last < 0.6 * first,
            "L1 loss did not fall: {first} -> {last}"
        );
    }
}
