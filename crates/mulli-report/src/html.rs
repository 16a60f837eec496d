//! The HTML of the report. Everything user-controlled (instructions, task names, paths) goes
//! through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::ReportError;
use crate::chart::{Series, line_chart};

/// Embedded videos stop at this many bytes; the rest are linked (a report must stay openable).
const MAX_EMBEDDED_BYTES: usize = 48 << 20;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub struct Parts<'a> {
    pub title: &'a str,
    pub info: &'a Value,
    pub eval_dir: &'a Path,
    pub metrics: &'a [Value],
    pub policy: Option<&'a Value>,
    pub dataset: Option<&'a Value>,
    pub capture: Option<&'a Value>,
    pub flywheel: Option<&'a Value>,
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans KR",sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:120px}
.card .v{font-size:24px;font-weight:600} .card .l{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.rate{text-align:center;min-width:84px} .ci{color:#555;font-size:11px;display:block}
.videos{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px}
figure video,figure img{width:100%;image-rendering:pixelated;background:#000;border-radius:4px}
figcaption{font-size:12px;margin-top:4px} .ok{color:#1a7f37;font-weight:600} .bad{color:#b42318;font-weight:600}
pre{background:#fff;border:1px solid #ddd;padding:10px;overflow:auto;font-size:12px;max-height:420px}
.note{color:#666;font-size:13px}
"#;

fn pct(v: f64) -> String {
    format!("{:.0}%", v)
}

/// Background of a success-rate cell: red (0) → yellow → green (1).
fn rate_color(rate: f64) -> String {
    let hue = (rate.clamp(0.0, 1.0) * 120.0).round();
    format!("hsl({hue},70%,85%)")
}

/// Median of the finite values of `v` (`None` when there are none). Not
/// `mulli_core::stats::median`: this crate reads JSON and depends on no mulli crate.
fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// How the evaluation executed the policy's action chunks, in words (`settings.execution`;
/// empty for an `eval_info.json` that does not say).
fn execution(v: &Value) -> String {
    match (v["mode"].as_str(), &v["execute"], &v["decay"]) {
        (Some("receding_horizon"), n, _) => {
            format!(" · {} actions of each chunk, then re-plan", s(n))
        }
        (Some("temporal_ensemble"), _, d) => {
            format!(" · chunks ensembled every step (decay {})", s(d))
        }
        _ => String::new(),
    }
}

pub fn document(p: &Parts) -> Result<String, ReportError> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body><main>",
        escape(p.title)
    );
    let info = p.info;
    let settings = &info["settings"];
    let _ = write!(h, "<h1>{}</h1>", escape(p.title));
    let _ = write!(
        h,
        "<p class=\"sub\">policy <code>{}</code> · suite {} · episodes per task and split: {} · seed {}{} · mulli {}</p>",
        escape(&s(&settings["policy"])),
        escape(&s(&settings["suite"])),
        escape(&s(&settings["episodes_per_task"])),
        escape(&s(&settings["seed"])),
        escape(&execution(&settings["execution"])),
        escape(&s(&settings["mulli_version"]))
    );
    headline(&mut h, info);
    matrix(&mut h, info);
    failures(&mut h, info);
    curves(&mut h, p.metrics);
    videos(&mut h, info, p.eval_dir)?;
    dataset(&mut h, p.dataset, p.capture);
    policy(&mut h, p.policy);
    timings(&mut h, p.flywheel, info);
    config(&mut h, p.flywheel, settings);
    h.push_str("</main></body></html>\n");
    Ok(h)
}

fn headline(h: &mut String, info: &Value) {
    let agg = &info["aggregated"];
    let ci = &info["pc_success_ci95"];
    let n = info["per_episode"].as_array().map_or(0, Vec::len);
    h.push_str("<h2>Success</h2><div class=\"cards\">");
    let _ = write!(
        h,
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"l\">all {n} episodes · 95% CI {}–{}</div></div>",
        pct(f(&agg["pc_success"])),
        pct(f(&ci[0])),
        pct(f(&ci[1]))
    );
    for sp in info["split_scores"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<div class=\"card\" style=\"background:{}\"><div class=\"v\">{}</div><div class=\"l\">{} · {}/{} · CI {}–{}</div></div>",
            rate_color(f(&sp["rate"])),
            pct(100.0 * f(&sp["rate"])),
            escape(&s(&sp["split"])),
            s(&sp["successes"]),
            s(&sp["episodes"]),
            pct(100.0 * f(&sp["ci"][0])),
            pct(100.0 * f(&sp["ci"][1]))
        );
    }
    h.push_str("</div>");
    let _ = write!(
        h,
        "<p class=\"note\">Success = the task's physical predicate holds (e.g. the drawer is open past its threshold). Intervals are Wilson 95%: with 10 episodes, 80% means anything from 49% to 94%. Evaluation took {:.0} s ({:.2} s per episode).</p>",
        f(&agg["eval_s"]),
        f(&agg["eval_ep_s"])
    );
}

/// Tasks × splits, each cell the success rate with its interval.
fn matrix(h: &mut String, info: &Value) {
    let scores = info["scores"].as_array().cloned().unwrap_or_default();
    let mut splits: Vec<String> = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for sc in &scores {
        if sc.get("instruction").is_some_and(|v| !v.is_null()) {
            continue;
        }
        let (sp, t) = (s(&sc["split"]), s(&sc["task"]));
        if !splits.contains(&sp) {
            splits.push(sp.clone());
        }
        if !tasks.contains(&t) {
            tasks.push(t.clone());
        }
        cells.insert((t, sp), sc);
    }
    h.push_str("<h2>Per task and split</h2><table><tr><th>task</th>");
    for sp in &splits {
        let _ = write!(h, "<th>{}</th>", escape(sp));
    }
    h.push_str("</tr>");
    for t in &tasks {
        let _ = write!(h, "<tr><th>{}</th>", escape(t));
        for sp in &splits {
            match cells.get(&(t.clone(), sp.clone())) {
                Some(sc) => {
                    let _ = write!(
                        h,
                        "<td class=\"rate\" style=\"background:{}\">{}/{} <b>{}</b><span class=\"ci\">{}–{}</span></td>",
                        rate_color(f(&sc["rate"])),
                        s(&sc["successes"]),
                        s(&sc["episodes"]),
                        pct(100.0 * f(&sc["rate"])),
                        pct(100.0 * f(&sc["ci"][0])),
                        pct(100.0 * f(&sc["ci"][1]))
                    );
                }
                None => h.push_str("<td>-</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    let custom: Vec<&Value> = scores
        .iter()
        .filter(|sc| sc.get("instruction").is_some_and(|v| !v.is_null()))
        .collect();
    if !custom.is_empty() {
        h.push_str("<h2>Your instructions</h2><table><tr><th>task</th><th>instruction</th><th>success</th></tr>");
        for sc in custom {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"rate\" style=\"background:{}\">{}/{} ({})</td></tr>",
                escape(&s(&sc["task"])),
                escape(&s(&sc["instruction"])),
                rate_color(f(&sc["rate"])),
                s(&sc["successes"]),
                s(&sc["episodes"]),
                pct(100.0 * f(&sc["rate"]))
            );
        }
        h.push_str("</table>");
    }
}

fn failures(h: &mut String, info: &Value) {
    let mut by_task: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut reasons: Vec<String> = Vec::new();
    for sc in info["scores"].as_array().into_iter().flatten() {
        for (reason, n) in sc["failures"].as_object().into_iter().flatten() {
            if !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
            *by_task
                .entry(s(&sc["task"]))
                .or_default()
                .entry(reason.clone())
                .or_default() += n.as_u64().unwrap_or(0);
        }
    }
    h.push_str("<h2>Why episodes failed</h2>");
    if by_task.is_empty() {
        h.push_str("<p class=\"note\">No failures.</p>");
        return;
    }
    reasons.sort();
    // Grasping tasks: where the hand was in the failed episodes and, for a policy that
    // perceives, how far off it saw the target (medians, cm).
    let mut reach: BTreeMap<String, [Vec<f64>; 4]> = BTreeMap::new();
    for e in info["per_episode"].as_array().into_iter().flatten() {
        if e["success"].as_bool() == Some(false) {
            let r = reach.entry(s(&e["task"])).or_default();
            r[0].extend(e["closest_m"].as_f64());
            r[1].extend(e["at_close_m"].as_f64());
            r[2].extend(e["perceived_err_m"].as_f64());
            r[3].extend(e["released_m"].as_f64());
        }
    }
    let cm = |v: &[f64]| match median(v) {
        Some(m) => format!("{:.1}", 100.0 * m),
        None => "—".into(),
    };
    let with_reach = reach.values().any(|r| !r[0].is_empty());
    let with_seen = reach.values().any(|r| !r[2].is_empty());
    let with_release = reach.values().any(|r| !r[3].is_empty());
    h.push_str("<table><tr><th>task</th>");
    for r in &reasons {
        let _ = write!(h, "<th>{}</th>", escape(r));
    }
    if with_reach {
        h.push_str("<th>hand–object, closest (cm)</th><th>hand–object at close (cm)</th>");
    }
    if with_seen {
        h.push_str("<th>target seen off by (cm)</th>");
    }
    if with_release {
        h.push_str("<th>let go from the target (cm)</th>");
    }
    h.push_str("</tr>");
    for (task, counts) in &by_task {
        let _ = write!(h, "<tr><th>{}</th>", escape(task));
        for r in &reasons {
            let _ = write!(
                h,
                "<td class=\"num\">{}</td>",
                counts.get(r).copied().unwrap_or(0)
            );
        }
        let r = reach.get(task).cloned().unwrap_or_default();
        if with_reach {
            let _ = write!(
                h,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                cm(&r[0]),
                cm(&r[1])
            );
        }
        if with_seen {
            let _ = write!(h, "<td class=\"num\">{}</td>", cm(&r[2]));
        }
        if with_release {
            let _ = write!(h, "<td class=\"num\">{}</td>", cm(&r[3]));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><p class=\"note\">timeout: ran out of steps; missed_grasp: ran out of steps after the hand closed without lifting the object; dropped_object: lifted, then lost; wrong_target: the wrong object or receptacle; physics_fault: the simulation became invalid.");
    if with_reach {
        h.push_str(" Hand–object: medians over the failed episodes of grasping tasks, from the tool centre to the target object's centre; far at close means the policy never found the object, near means it found it and the grasp failed.");
    }
    if with_seen {
        h.push_str(" Target seen off by: median over those episodes of the distance between where the policy perceived the target object and where it was, over the episode's queries.");
    }
    if with_release {
        h.push_str(" Let go from the target: placing tasks, median over the failed episodes that opened the hand while holding the object of how far it was, horizontally, from the receptacle's centre at that moment; far means it was carried to the wrong place or let go on the way, near means it was let go there and did not stay.");
    }
    h.push_str("</p>");
}

fn curves(h: &mut String, metrics: &[Value]) {
    h.push_str("<h2>Training</h2>");
    if metrics.is_empty() {
        h.push_str("<p class=\"note\">No training metrics.</p>");
        return;
    }
    let series = |key: &str| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| Some((m["step"].as_f64()?, m[key].as_f64()?)))
            .collect()
    };
    let loss = [
        Series {
            name: "train loss".into(),
            color: "#2563eb".into(),
            points: series("loss"),
        },
        Series {
            name: "val loss (EMA)".into(),
            color: "#dc2626".into(),
            points: series("val_loss"),
        },
        Series {
            name: "auxiliary loss (object positions)".into(),
            color: "#9333ea".into(),
            points: series("aux_loss"),
        },
    ];
    let loss: Vec<Series> = loss.into_iter().filter(|s| !s.points.is_empty()).collect();
    h.push_str(&line_chart("loss", "step", &loss, true));
    let lr = [Series {
        name: "learning rate".into(),
        color: "#059669".into(),
        points: series("lr"),
    }];
    h.push_str(&line_chart("learning rate", "step", &lr, false));
    let last = metrics.last().expect("not empty");
    let _ = write!(
        h,
        "<p class=\"note\">{} steps in {:.0} s; {:.0} samples/s at the end.</p>",
        s(&last["step"]),
        f(&last["elapsed_s"]),
        f(&last["samples_per_s"])
    );
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn videos(h: &mut String, info: &Value, dir: &Path) -> Result<(), ReportError> {
    h.push_str("<h2>Rollouts</h2>");
    let eps: Vec<&Value> = info["per_episode"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["video"].is_string())
        .collect();
    if eps.is_empty() {
        h.push_str("<p class=\"note\">No rollout videos were recorded.</p>");
        return Ok(());
    }
    h.push_str("<p class=\"note\">Both cameras side by side (agent view | wrist), one success and one failure per task and split where there was one.</p><div class=\"videos\">");
    let mut embedded = 0usize;
    for e in eps {
        let rel = s(&e["video"]);
        // Paths come from the file: keep them inside the evaluation directory.
        if rel.contains("..") || rel.starts_with('/') {
            return Err(ReportError::Inconsistent {
                path: dir.join("eval_info.json"),
                message: format!("video path {rel} leaves the evaluation directory"),
            });
        }
        let path = dir.join(&rel);
        let mp4 = std::fs::read(&path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        let poster = std::fs::read(path.with_extension("png")).ok();
        let ok = e["success"] == true;
        h.push_str("<figure>");
        let poster_attr = poster
            .as_deref()
            .map(|b| format!(" poster=\"{}\"", data_uri("image/png", b)))
            .unwrap_or_default();
        if embedded + mp4.len() <= MAX_EMBEDDED_BYTES {
            embedded += mp4.len();
            let _ = write!(
                h,
                "<video controls muted loop playsinline preload=\"metadata\"{poster_attr} src=\"{}\"></video>",
                data_uri("video/mp4", &mp4)
            );
        } else {
            let _ = write!(
                h,
                "<video controls muted{poster_attr} src=\"{}\"></video>",
                escape(&path.display().to_string())
            );
        }
        let _ = write!(
            h,
            "<figcaption><span class=\"{}\">{}</span> · {} · {} · {} steps<br>“{}”</figcaption></figure>",
            if ok { "ok" } else { "bad" },
            if ok {
                "success".to_string()
            } else {
                format!("failure ({})", escape(&s(&e["failure"])))
            },
            escape(&s(&e["task"])),
            escape(&s(&e["split"])),
            s(&e["steps"]),
            escape(&s(&e["instruction"]))
        );
    }
    h.push_str("</div>");
    Ok(())
}

fn dataset(h: &mut String, info: Option<&Value>, capture: Option<&Value>) {
    h.push_str("<h2>Data</h2>");
    let Some(info) = info else {
        h.push_str("<p class=\"note\">No dataset given.</p>");
        return;
    };
    let cameras: Vec<String> = info["features"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v["dtype"] == "video" || v["dtype"] == "image")
        .map(|(k, v)| format!("{k} {}", s(&v["shape"])))
        .collect();
    let _ = write!(
        h,
        "<p>LeRobot {} dataset · {} episodes · {} frames · {} fps · {} tasks · robot {} · cameras {}</p>",
        escape(&s(&info["codebase_version"])),
        s(&info["total_episodes"]),
        s(&info["total_frames"]),
        s(&info["fps"]),
        s(&info["total_tasks"]),
        escape(&s(&info["robot_type"])),
        escape(&cameras.join(", "))
    );
    if let Some(per_task) = capture.and_then(|c| c["per_task"].as_object()) {
        h.push_str("<table><tr><th>task</th><th>expert attempts</th><th>kept demos</th></tr>");
        for (task, t) in per_task {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(task),
                s(&t["attempts"]),
                s(&t["written"])
            );
        }
        h.push_str("</table>");
    }
}

fn policy(h: &mut String, spec: Option<&Value>) {
    let Some(spec) = spec else { return };
    let m = &spec["model"];
    let _ = write!(
        h,
        "<h2>Policy</h2><p>{} head · {} · d_model {} · {} fusion layers · chunk {} · trained {} steps (last loss {}, val {})</p>",
        escape(&s(&m["head"])),
        if m["cameras"].as_u64() == Some(0) {
            "no images".to_owned()
        } else {
            format!(
                "{} px images · {} stem {}",
                s(&m["image_size"]),
                // Checkpoints from before the patch stem have no `stem`: they are convolutional.
                escape(m["stem"].as_str().unwrap_or("conv")),
                escape(&s(&m["conv_channels"]))
            )
        },
        s(&m["d_model"]),
        s(&m["n_layers"]),
        s(&m["chunk"]),
        s(&spec["training"]["step"]),
        s(&spec["training"]["last_loss"]),
        s(&spec["training"]["last_val_loss"])
    );
    // What the policy sees besides images and instruction: readers must know whether a
    // success rate needed privileged object positions.
    let mut inputs = Vec::new();
    let cameras: Vec<&str> = spec["cameras"]
        .as_array()
        .map_or(Vec::new(), |c| c.iter().filter_map(Value::as_str).collect());
    if cameras.is_empty() && m["cameras"].as_u64() == Some(0) {
        inputs.push("<b>no cameras</b> (a state-only policy)".to_owned());
    } else if let Some(unused) = spec["unused_cameras"].as_array().filter(|u| !u.is_empty()) {
        let unused: Vec<&str> = unused.iter().filter_map(Value::as_str).collect();
        inputs.push(format!(
            "cameras {} (not {})",
            escape(&cameras.join(", ")),
            escape(&unused.join(", "))
        ));
    }
    if let Some(k) = m["keypoints"].as_u64().filter(|&k| k > 0) {
        inputs.push(format!("{k} spatial-softmax keypoints per camera"));
    }
    let hidden = spec["state_norm"]["ignored"].as_array().map_or(0, |v| {
        v.iter().filter(|b| b.as_bool() == Some(true)).count()
    });
    if hidden > 0 {
        inputs.push(format!("{hidden} state entries hidden (state_ignore)"));
    }
    if let Some(names) = spec["env_state"]["names"].as_array() {
        let n = names.len();
        inputs.push(if m["perceived"].as_u64().unwrap_or(0) > 0 {
            format!(
                "{n} object positions <b>perceived</b>: predicted from its own images (cameras only at inference)"
            )
        } else {
            format!(
                "{n} object positions <b>observed</b>: the simulator's privileged state is an input (a robot needs a pose estimator)"
            )
        });
    }
    if let Some(n) = m["object_tokens"].as_array().filter(|o| !o.is_empty()) {
        inputs.push(format!("one token per object ({})", n.len()));
    }
    if !inputs.is_empty() {
        let _ = write!(h, "<p>Inputs: {}.</p>", inputs.join(" · "));
    }
}

fn timings(h: &mut String, flywheel: Option<&Value>, info: &Value) {
    h.push_str("<h2>Timings</h2><table><tr><th>stage</th><th>status</th><th>seconds</th><th>note</th></tr>");
    match flywheel.and_then(|f| f["stages"].as_array()) {
        Some(stages) => {
            for st in stages {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.1}</td><td>{}</td></tr>",
                    escape(&s(&st["stage"])),
                    escape(&s(&st["status"])),
                    f(&st["seconds"]),
                    escape(&st["note"].as_str().map(str::to_string).unwrap_or_default())
                );
            }
            if let Some(total) = flywheel.and_then(|f| f["total_s"].as_f64()) {
                let _ = write!(
                    h,
                    "<tr><th>total (this run)</th><td></td><td class=\"num\">{total:.1}</td><td></td></tr>"
                );
            }
        }
        None => {
            let _ = write!(
                h,
                "<tr><td>eval</td><td>ran</td><td class=\"num\">{:.1}</td><td></td></tr>",
                f(&info["aggregated"]["eval_s"])
            );
        }
    }
    h.push_str("</table><p class=\"note\">cached: reused from an earlier run with the same inputs (its original time is shown).</p>");
}

fn config(h: &mut String, flywheel: Option<&Value>, settings: &Value) {
    h.push_str("<h2>Configuration and versions</h2><pre>");
    let v = match flywheel {
        Some(f) => serde_json::json!({
            "mulli_version": f["mulli_version"],
            "quick": f["quick"],
            "config": f["config"],
            "eval": settings,
        }),
        None => settings.clone(),
    };
    h.push_str(&escape(
        &serde_json::to_string_pretty(&v).unwrap_or_default(),
    ));
    h.push_str("</pre>");
}
