//! `mulli serve` (a trained policy behind openpi's websocket protocol) and
//! `mulli bench serve` (protocol overhead over in-process inference, under load).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use mulli_core::{ActionChunk, CameraImage, Execution, Observation, Policy};
use mulli_policy::checkpoint::{self, PolicySpec};
use mulli_policy::{VlaConfig, VlaPolicy};
use mulli_serve::{CameraInfo, PolicyInfo, RemotePolicy, ServeConfig, Server};

#[derive(Args)]
pub struct ServeArgs {
    /// Run directory (or checkpoint directory) of the policy to serve.
    #[arg(long, required_unless_present = "print_config")]
    pub policy: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Api-Key <KEY>` on websocket connections (overrides the config).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Serve config (TOML: batching, limits, `[observation]` key mapping; see --print-config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the default serve config for --policy (or a generic one) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// `cpu`, `cuda:N` or `vulkan:N` (with the `cuda` / `vulkan` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// What a trained policy tells clients it needs.
pub fn policy_info(spec: &PolicySpec, name: &str) -> PolicyInfo {
    let s = spec.model.image_size;
    PolicyInfo {
        name: name.to_string(),
        cameras: spec
            .cameras
            .iter()
            .map(|c| CameraInfo {
                name: c.clone(),
                height: s,
                width: s,
            })
            .collect(),
        state_dim: spec.proprio_dim(),
        state_names: spec.proprio_names().map(<[String]>::to_vec),
        env_state_dim: spec.required_env_state().map_or(0, |e| e.width),
        action_dim: spec.model.action_dim,
        chunk: spec.model.chunk,
        execution: Some(spec.execution),
    }
}

fn read_config(path: Option<&Path>) -> Result<ServeConfig> {
    let Some(path) = path else {
        return Ok(ServeConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ServeConfig::from_toml(&text).with_context(|| format!("serve config {}", path.display()))
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut config = read_config(args.config.as_deref())?;
    let spec = match &args.policy {
        Some(run) => {
            let dir = checkpoint::checkpoint_dir(run)
                .with_context(|| format!("{}: no policy here (no policy.json)", run.display()))?;
            Some((checkpoint::read_spec(&dir)?, run.clone()))
        }
        None => None,
    };
    if args.print_config {
        if let Some((spec, _)) = &spec {
            // Show the keys this policy will read, so they can be edited.
            let info = policy_info(spec, "");
            let map = mulli_serve::ObservationMap::resolve(&config.observation, &info)?;
            config.observation.cameras = map.cameras.into_iter().collect();
            config.observation.state = Some(map.state);
            config.observation.environment_state = map.environment_state;
            config.observation.prompt = Some(map.prompt);
        }
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some((spec, run)) = spec else {
        anyhow::bail!("--policy RUN is required");
    };
    if args.api_key.is_some() {
        config.api_key = args.api_key.clone();
    }
    let info = policy_info(&spec, &run.display().to_string());
    let device = mulli_policy::device(&args.device)?;
    let addr = format!("{}:{}", args.host, args.port);
    let server = Server::start(
        move || VlaPolicy::load(&run, &device),
        info.clone(),
        config.clone(),
        &addr,
    )
    .with_context(|| format!("serving {}", spec.training.datasets.join(", ")))?;
    let map = mulli_serve::ObservationMap::resolve(&config.observation, &info)?;
    use std::fmt::Write as _;
    let mut banner = format!(
        "serving {} on ws://{} (openpi protocol; GET /healthz, GET /metrics){}\n",
        info.name,
        server.local_addr(),
        if config.api_key.is_some() {
            "; API key required"
        } else {
            ""
        }
    );
    for (name, key) in &map.cameras {
        let _ = writeln!(
            banner,
            "  {key:<28} camera {name} ({s}×{s} RGB; uint8 HWC/CHW or float [0, 1])",
            s = spec.model.image_size
        );
    }
    let _ = writeln!(
        banner,
        "  {:<28} state, {} values",
        map.state,
        spec.proprio_dim()
    );
    if let Some(key) = &map.environment_state {
        let _ = writeln!(
            banner,
            "  {key:<28} environment state (object poses), {} values",
            info.env_state_dim
        );
    }
    let _ = writeln!(banner, "  {:<28} instruction", map.prompt);
    let _ = writeln!(
        banner,
        "  → actions [{}, {}] float32; Ctrl-C stops",
        spec.model.chunk, spec.model.action_dim
    );
    // A server outlives whoever reads its banner (`| head -1`, a supervisor that closes the
    // pipe): a closed stdout must not stop it, as println! would by panicking.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    server.wait();
    Ok(ExitCode::SUCCESS)
}

/// `mulli eval --server`: connect and describe the remote policy for the evaluator.
pub fn connect(url: &str, api_key: Option<&str>) -> Result<(RemotePolicy, usize, Execution)> {
    let policy =
        RemotePolicy::connect(url, api_key).with_context(|| format!("connecting to {url}"))?;
    let info = policy.policy_info().with_context(|| {
        format!("{url} is not a mulli server (its metadata lacks camera sizes)")
    })?;
    let size = info.cameras.first().map_or(0, |c| c.height);
    anyhow::ensure!(
        info.cameras
            .iter()
            .all(|c| c.height == size && c.width == size),
        "the served policy's cameras differ in size ({:?}); the kitchen renders one size",
        info.cameras
    );
    let execution = info.execution.unwrap_or_default();
    Ok((policy, size, execution))
}

// ---- bench ---------------------------------------------------------------------------------

/// A cheap deterministic stand-in with the default VLA's shapes, so the benchmark measures the
/// protocol and not the model: each action is a fixed function of the state and a few pixels.
struct StandIn {
    chunk: usize,
    action_dim: usize,
}

impl Policy for StandIn {
    type Error = std::convert::Infallible;
    fn reset(&mut self) {}
    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, Self::Error> {
        let px: f32 = obs
            .images
            .values()
            .map(|i| f32::from(i.rgb.first().copied().unwrap_or(0)))
            .sum();
        let s0 = obs.state.first().copied().unwrap_or(0.0);
        Ok(ActionChunk {
            actions: (0..self.chunk)
                .map(|i| {
                    (0..self.action_dim)
                        .map(|j| s0 + px * 1e-3 + (i * self.action_dim + j) as f32)
                        .collect()
                })
                .collect(),
        })
    }
}

fn bench_obs(info: &PolicyInfo, seed: u8) -> Observation {
    let mut o = Observation {
        state: (0..info.state_dim).map(|i| i as f32 * 0.1).collect(),
        instruction: "put the ketchup in the fridge".into(),
        ..Default::default()
    };
    for c in &info.cameras {
        o.images.insert(
            c.name.clone(),
            CameraImage {
                width: c.width,
                height: c.height,
                rgb: (0..c.width * c.height * 3)
                    .map(|p| (p as u8).wrapping_mul(31).wrapping_add(seed))
                    .collect(),
                depth: None,
            },
        );
    }
    o
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// In-process p50/p99 (ms) of `act` on one observation.
fn in_process<P: Policy>(policy: &mut P, obs: &Observation, calls: usize) -> Result<(f64, f64)> {
    let mut t = Vec::with_capacity(calls);
    for i in 0..calls + 5 {
        let t0 = Instant::now();
        policy
            .act(obs)
            .map_err(|e| anyhow::anyhow!("in-process inference: {e}"))?;
        if i >= 5 {
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((percentile(&mut t, 0.5), percentile(&mut t, 0.99)))
}

struct Load {
    p50: f64,
    p99: f64,
    errors: usize,
    requests: usize,
    wall: f64,
}

/// `clients` threads, each with its own connection, `requests` calls each.
fn load(url: &str, info: &PolicyInfo, clients: usize, requests: usize) -> Load {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let url = url.to_string();
            let obs = bench_obs(info, k as u8);
            std::thread::spawn(move || {
                let mut times = Vec::with_capacity(requests);
                let mut errors = 0;
                let mut client = match RemotePolicy::connect(&url, None) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "bench client could not connect");
                        return (times, requests);
                    }
                };
                for _ in 0..requests {
                    let t0 = Instant::now();
                    match client.act(&obs) {
                        Ok(_) => times.push(t0.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            tracing::warn!(error = %e, "bench request failed");
                            errors += 1;
                        }
                    }
                }
                client.close();
                (times, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        match h.join() {
            Ok((t, e)) => {
                all.extend(t);
                errors += e;
            }
            Err(_) => errors += requests,
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let n = all.len();
    Load {
        p50: percentile(&mut all, 0.5),
        p99: percentile(&mut all, 0.99),
        errors,
        requests: n,
        wall,
    }
}

fn report<P, F>(
    label: &str,
    factory: F,
    mut local: P,
    info: &PolicyInfo,
    clients: &[usize],
    requests: usize,
) -> Result<usize>
where
    P: Policy,
    F: FnOnce() -> Result<P, String> + Send + 'static,
    P: 'static,
{
    let obs = bench_obs(info, 0);
    let calls = requests.clamp(50, 500);
    let (ip50, ip99) = in_process(&mut local, &obs, calls)?;
    drop(local);
    println!("{label}");
    println!("  in-process act: p50 {ip50:.3} ms, p99 {ip99:.3} ms ({calls} calls)");
    let server = Server::start(factory, info.clone(), ServeConfig::default(), "127.0.0.1:0")?;
    let url = format!("ws://{}", server.local_addr());
    println!(
        "  | clients | requests | p50 ms | p99 ms | p50 overhead ms | requests/s | errors | server RSS MiB |"
    );
    println!("  |---|---|---|---|---|---|---|---|");
    let mut total_errors = 0;
    for &c in clients {
        let l = load(&url, info, c, requests);
        total_errors += l.errors;
        println!(
            "  | {c} | {} | {:.3} | {:.3} | {:+.3} | {:.0} | {} | {:.0} |",
            l.requests,
            l.p50,
            l.p99,
            l.p50 - ip50,
            l.requests as f64 / l.wall,
            l.errors,
            rss_mib()
        );
    }
    let m = server.metrics().render();
    let batches = m
        .lines()
        .find_map(|l| l.strip_prefix("mulli_serve_batch_size_count "))
        .unwrap_or("?");
    let sum = m
        .lines()
        .find_map(|l| l.strip_prefix("mulli_serve_batch_size_sum "))
        .unwrap_or("?");
    println!("  server: {sum} requests in {batches} inference batches");
    Ok(total_errors)
}

/// The default VLA, untrained (seeded weights), as a served policy: its cost is the real
/// model's, whatever its weights.
fn default_vla(device: &burn::tensor::Device) -> Result<VlaPolicy> {
    let config = VlaConfig::default();
    let model = mulli_policy::Vla::new(&config, 0, device)?;
    let norm = |n: usize| {
        mulli_policy::Normalizer::new(
            mulli_policy::NormMode::MeanStd,
            &vec![0.0; n],
            &vec![1.0; n],
        )
    };
    let spec = PolicySpec {
        format: checkpoint::FORMAT.into(),
        cameras: vec!["agentview".into(), "wrist".into()],
        unused_cameras: Vec::new(),
        fps: 20,
        robot_type: None,
        state_names: None,
        action_names: None,
        state_norm: norm(config.state_dim)?,
        action_norm: norm(config.action_dim)?,
        aux_names: Vec::new(),
        aux_norm: None,
        pixel_things: Vec::new(),
        env_state: None,
        text_encoder_dir: None,
        execution: Execution::default(),
        params: 0,
        training: Default::default(),
        model: config,
    };
    Ok(VlaPolicy::from_parts(spec, model, None, device.clone())?)
}

pub fn bench(
    clients: &[usize],
    requests: usize,
    vla: bool,
    policy: Option<&Path>,
    device: &str,
) -> Result<ExitCode> {
    anyhow::ensure!(
        requests > 0 && !clients.is_empty() && clients.iter().all(|&c| c > 0),
        "--requests and --clients must be positive"
    );
    let d = VlaConfig::default();
    let info = PolicyInfo {
        name: "stand-in".into(),
        cameras: ["agentview", "wrist"]
            .iter()
            .map(|n| CameraInfo {
                name: n.to_string(),
                height: d.image_size,
                width: d.image_size,
            })
            .collect(),
        state_dim: d.state_dim,
        state_names: None,
        env_state_dim: 0,
        action_dim: d.action_dim,
        chunk: d.chunk,
        execution: None,
    };
    println!(
        "loopback, observation: 2 cameras {s}×{s} RGB8 + {} state values + instruction → {}×{} actions; {} cores",
        d.state_dim,
        d.chunk,
        d.action_dim,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s = d.image_size
    );
    let (h, a) = (d.chunk, d.action_dim);
    let mut errors = report(
        "stand-in policy (protocol only)",
        move || {
            Ok(StandIn {
                chunk: h,
                action_dim: a,
            })
        },
        StandIn {
            chunk: h,
            action_dim: a,
        },
        &info,
        clients,
        requests,
    )?;
    let device = mulli_policy::device(device)?;
    if vla {
        let local = default_vla(&device)?;
        let info = policy_info(local.spec(), "default VLA (untrained)");
        let d2 = device.clone();
        errors += report(
            "default VLA (L1 head, 96×96 cameras, untrained weights)",
            move || default_vla(&d2).map_err(|e| e.to_string()),
            local,
            &info,
            clients,
            requests,
        )?;
    }
    if let Some(run) = policy {
        let local = VlaPolicy::load(run, &device)?;
        let info = policy_info(local.spec(), &run.display().to_string());
        let run = run.to_path_buf();
        errors += report(
            &format!(
                "trained VLA {} ({}×{} cameras)",
                run.display(),
                local.spec().model.image_size,
                local.spec().model.image_size
            ),
            move || VlaPolicy::load(&run, &device).map_err(|e| e.to_string()),
            local,
            &info,
            clients,
            requests,
        )?;
    }
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    Ok(ExitCode::SUCCESS)
}
