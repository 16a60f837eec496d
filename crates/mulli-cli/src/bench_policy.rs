//! `mulli bench train` and `mulli bench infer`: the default VLA's training throughput and
//! batch-1 latency on synthetic inputs of the kitchen's shapes, with the time split into
//! forward, backward and optimizer so the profile shows where the CPU goes. The PyTorch twin
//! (`scripts/bench_policy_torch.sh`) runs the same architecture for the ratio.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use mulli_policy::data::HostBatch;
use mulli_policy::model::TextInput;
use mulli_policy::train::{Batcher, gradients};
use mulli_policy::{Head, Vla, VlaConfig};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The default VLA, or the sizes in a TOML file, with `head`.
pub fn config_for(head: Head, file: Option<&std::path::Path>) -> Result<VlaConfig> {
    let base = match file {
        None => VlaConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading model config {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: not a model config", path.display()))?
        }
    };
    let config = VlaConfig { head, ..base };
    config.validate()?;
    Ok(config)
}

fn sync(device: &burn::tensor::Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("waiting for the device: {e:?}"))
}

pub fn train(
    batch: usize,
    steps: usize,
    micro_batches: usize,
    config: &VlaConfig,
    device: &str,
    baseline: Option<f64>,
) -> Result<ExitCode> {
    anyhow::ensure!(
        batch > 0 && steps > 0,
        "--batch-size and --steps must be positive"
    );
    anyhow::ensure!(
        (1..=batch).contains(&micro_batches),
        "--micro-batches {micro_batches}: must be between 1 and --batch-size ({batch})"
    );
    let device = mulli_policy::device(device)?.autodiff();
    let head = config.head;
    let mut model = Vla::new(config, 0, &device)?;
    let batcher = Batcher::new(config, None)?;
    let host = HostBatch::synthetic(config, batch, 12, 1);
    let mut opt = AdamWConfig::new()
        .with_weight_decay(1e-4)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    println!(
        "VLA ({head:?} head, {} parameters), batch {batch} in {micro_batches} micro-batch(es), {} rayon threads",
        model.num_params(),
        rayon::current_num_threads()
    );
    let warmup = 2;
    let (mut fwd, mut bwd, mut upd, mut total) = (vec![], vec![], vec![], vec![]);
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let (t1, grads) = if micro_batches == 1 {
            let loss = batcher.loss(&model, &host, &device)?;
            // Force the forward pass to finish before timing the backward pass.
            let _ = loss.clone().into_scalar::<f32>();
            (
                Instant::now(),
                GradientsParams::from_grads(loss.backward(), &model),
            )
        } else {
            // The parts' forward and backward passes overlap: charged to "backward".
            let (grads, _) = gradients(&batcher, &model, &host, micro_batches, &device)?;
            (t0, grads)
        };
        // GPU backends queue kernels and return: wait for them, so each phase is charged
        // with its own work (a no-op on the CPU backend).
        sync(&device)?;
        let t2 = Instant::now();
        model = opt.step(3e-4, model, grads);
        sync(&device)?;
        let t3 = Instant::now();
        if i >= warmup {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    let step = median(&mut total);
    let rate = batch as f64 / step;
    if micro_batches == 1 {
        println!(
            "step {:.3} s (forward {:.3}, backward {:.3}, optimizer {:.3}; medians of {steps})",
            step,
            median(&mut fwd),
            median(&mut bwd),
            median(&mut upd)
        );
    } else {
        println!(
            "step {:.3} s (forward + backward {:.3}, optimizer {:.3}; medians of {steps})",
            step,
            median(&mut bwd),
            median(&mut upd)
        );
    }
    println!("training: {rate:.1} samples/s");
    if let Some(b) = baseline {
        println!("baseline: {b:.1} samples/s → ratio {:.2}×", rate / b);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn infer(
    calls: usize,
    config: &VlaConfig,
    device: &str,
    baseline: Option<f64>,
) -> Result<ExitCode> {
    anyhow::ensure!(calls > 0, "--calls must be positive");
    let device = mulli_policy::device(device)?;
    let head = config.head;
    let model = Vla::new(config, 0, &device)?;
    let batcher = Batcher::new(config, None)?;
    let host = HostBatch::synthetic(config, 1, 1, 2);
    let noise = || burn::tensor::Tensor::<3>::zeros([1, config.chunk, config.action_dim], &device);
    println!(
        "VLA ({head:?} head, {} parameters), batch 1, {} rayon threads",
        model.num_params(),
        rayon::current_num_threads()
    );
    // Latencies (ms) of `calls` calls after 10 warm-up calls.
    let time = |call: &mut dyn FnMut() -> Result<()>| -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls + 10 {
            let t0 = Instant::now();
            call()?;
            if i >= 10 {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(times)
    };
    let mut times = time(&mut || {
        let input = batcher.input(&host, &device)?;
        let _ = model
            .predict(input, (head == Head::Flow).then(noise))
            .into_data();
        Ok(())
    })?;
    let p50 = percentile(&mut times, 0.5);
    let p99 = percentile(&mut times, 0.99);
    println!(
        "inference: p50 {p50:.2} ms, p99 {p99:.2} ms over {calls} calls (the instruction encoded every call, as the PyTorch twin does)"
    );
    // What `VlaPolicy` does: a robot sends the same instruction every step, and the
    // policy keeps it encoded.
    let features = model.encode_text(batcher.input(&host, &device)?.text);
    let index = || {
        burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(vec![0i64], [1]),
            &device,
        )
    };
    let mut cached = time(&mut || {
        let mut input = batcher.input(&host, &device)?;
        input.text = TextInput::Encoded {
            features: features.clone(),
            index: index(),
        };
        let _ = model
            .predict(input, (head == Head::Flow).then(noise))
            .into_data();
        Ok(())
    })?;
    let c50 = percentile(&mut cached, 0.5);
    let c99 = percentile(&mut cached, 0.99);
    println!("inference, instruction kept encoded (VlaPolicy): p50 {c50:.2} ms, p99 {c99:.2} ms");
    if let Some(b) = baseline {
        println!(
            "baseline p50: {b:.2} ms → ratio {:.2}× encoding every call, {:.2}× kept encoded (below 1 = faster)",
            p50 / b,
            c50 / b
        );
    }
    Ok(ExitCode::SUCCESS)
}
