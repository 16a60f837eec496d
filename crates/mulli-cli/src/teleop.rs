//! `mulli sim teleop`: drive the kitchen arm from the keyboard in a terminal, watching both
//! cameras drawn with half-block characters, and record the episodes you keep as a LeRobot
//! dataset. `--keys` replays a key sequence without a terminal (scripts, tests).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEventKind};
use crossterm::style::{Color, Print, SetBackgroundColor, SetForegroundColor};
use crossterm::{cursor, queue, terminal};
use mulli_data::{DatasetWriter, WriterOptions};
use mulli_sim::teleop::{Command, Outcome, Session};
use mulli_sim::{EnvConfig, KitchenEnv};

#[derive(clap::Args)]
pub struct TeleopArgs {
    #[arg(long, default_value = "pick_up_apple")]
    task: String,
    /// Instruction shown and recorded (default: the task's canonical English phrasing).
    #[arg(long)]
    instruction: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Record kept episodes (Enter) into this LeRobot dataset.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Add to the dataset in --out instead of refusing a non-empty directory.
    #[arg(long, conflicts_with = "force")]
    append: bool,
    /// Replace what is in --out.
    #[arg(long)]
    force: bool,
    /// Terminal view size per camera (pixels; two pixels per character row).
    #[arg(long, default_value_t = 48)]
    view: usize,
    /// Play these keys instead of reading the keyboard (e.g. "fff rr\n"; see the key list).
    #[arg(long)]
    keys: Option<String>,
}

/// Restores the terminal however the session ends.
struct RawTerminal;

impl RawTerminal {
    fn enter() -> Result<Self> {
        terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        let mut out = std::io::stdout();
        queue!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
        out.flush()?;
        Ok(RawTerminal)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let mut out = std::io::stdout();
        let _ = queue!(
            out,
            SetBackgroundColor(Color::Reset),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = out.flush();
        let _ = terminal::disable_raw_mode();
    }
}

fn key_command(code: KeyCode) -> Option<Command> {
    match code {
        KeyCode::Char(c) => Command::from_key(c),
        KeyCode::Enter => Some(Command::Save),
        KeyCode::Backspace => Some(Command::Discard),
        KeyCode::Esc => Some(Command::Quit),
        KeyCode::Up => Some(Command::Forward),
        KeyCode::Down => Some(Command::Back),
        KeyCode::Left => Some(Command::Left),
        KeyCode::Right => Some(Command::Right),
        KeyCode::PageUp => Some(Command::Up),
        KeyCode::PageDown => Some(Command::Down),
        _ => None,
    }
}

/// Both cameras side by side, two image rows per character row.
fn draw(session: &mut Session, view: usize, status: &str) -> Result<()> {
    let obs = session.env.observe();
    let mut out = std::io::stdout();
    queue!(out, cursor::MoveTo(0, 0))?;
    let cams: Vec<_> = KitchenEnv::CAMERAS
        .iter()
        .filter_map(|c| obs.images.get(*c))
        .collect();
    let pixel = |img: &mulli_core::CameraImage, x: usize, y: usize| {
        let sx = (x * img.width / view).min(img.width.saturating_sub(1));
        let sy = (y * img.height / view).min(img.height.saturating_sub(1));
        let i = (sy * img.width + sx) * 3;
        Color::Rgb {
            r: img.rgb[i],
            g: img.rgb[i + 1],
            b: img.rgb[i + 2],
        }
    };
    for row in 0..view / 2 {
        for img in &cams {
            for x in 0..view {
                queue!(
                    out,
                    SetForegroundColor(pixel(img, x, 2 * row)),
                    SetBackgroundColor(pixel(img, x, 2 * row + 1)),
                    Print('▀')
                )?;
            }
            queue!(out, SetBackgroundColor(Color::Reset), Print(' '))?;
        }
        queue!(out, Print("\r\n"))?;
    }
    queue!(
        out,
        SetForegroundColor(Color::Reset),
        terminal::Clear(terminal::ClearType::FromCursorDown)
    )?;
    queue!(out, Print(status.replace('\n', "\r\n")))?;
    out.flush()?;
    Ok(())
}

fn status(session: &Session, saved: usize, note: &str) -> String {
    format!(
        "task: {}  seed {}  step {}/{}  gripper {}  {}\ninstruction: {}\nkept episodes: {saved}  {note}\n{}\n",
        session.env.task().id(),
        session.seed(),
        session.env.steps(),
        session.env.max_steps(),
        if session.gripper_closed() {
            "closed"
        } else {
            "open"
        },
        if session.last_success() {
            "SUCCESS"
        } else {
            ""
        },
        session.env.instruction(),
        Command::HELP
    )
}

pub fn run(args: TeleopArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        args.view >= 8 && args.view <= 256,
        "--view {}: must be between 8 and 256",
        args.view
    );
    let task = mulli_sim::tasks::task(&args.task)?;
    let instruction = args.instruction.clone().unwrap_or_else(|| task.canonical());
    let config = EnvConfig::default();
    let mut writer = match &args.out {
        Some(dir) => Some(open_writer(dir, &config, args.append, args.force)?),
        None => None,
    };
    let env = KitchenEnv::new(config, task, args.seed, &instruction)?;
    let mut session = Session::new(env, args.seed);
    let mut kept = 0;
    let record = writer.is_some();

    if let Some(keys) = &args.keys {
        for c in keys.chars() {
            let Some(cmd) = Command::from_key(c) else {
                anyhow::bail!(
                    "--keys: '{}' is not a teleop key ({})",
                    c.escape_default(),
                    Command::HELP
                );
            };
            let outcome = session.apply(cmd, record)?;
            kept += flush(&mut session, writer.as_mut())?;
            if matches!(outcome, Outcome::Quit) {
                break;
            }
        }
    } else {
        anyhow::ensure!(
            std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            "teleop needs an interactive terminal (or --keys to replay a key sequence)"
        );
        let _raw = RawTerminal::enter()?;
        queue!(std::io::stdout(), terminal::Clear(terminal::ClearType::All))?;
        let mut note = String::new();
        loop {
            let text = status(&session, kept, &note);
            draw(&mut session, args.view, &text)?;
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind == KeyEventKind::Release {
                continue;
            }
            let Some(cmd) = key_command(key.code) else {
                continue;
            };
            note.clear();
            match session.apply(cmd, record)? {
                Outcome::Quit => break,
                Outcome::NextEpisode { saved, success } => {
                    note = format!(
                        "episode {} ({})",
                        if saved { "kept" } else { "skipped" },
                        if success { "success" } else { "no success" }
                    );
                }
                Outcome::Restarted => note = "episode discarded".into(),
                Outcome::Stepped(_) => {}
            }
            kept += flush(&mut session, writer.as_mut())?;
        }
    }
    if let (Some(w), Some(dir)) = (writer, &args.out) {
        w.finalize()
            .with_context(|| format!("finishing {}", dir.display()))?;
        println!("kept {kept} episode(s) in {}", dir.display());
    } else {
        println!("teleop ended (nothing recorded; pass --out DIR to keep episodes)");
    }
    Ok(ExitCode::SUCCESS)
}

fn open_writer(dir: &Path, config: &EnvConfig, append: bool, force: bool) -> Result<DatasetWriter> {
    let mode = crate::files::write_mode(force, append);
    let opts = WriterOptions {
        fps: config.control_hz,
        robot_type: Some(mulli_sim::env::ROBOT_TYPE.into()),
        mode,
        ..WriterOptions::default()
    };
    DatasetWriter::create(dir, &mulli_sim::record::features(config), opts)
        .with_context(|| format!("opening {} for recording", dir.display()))
}

/// Write the episodes the session kept (each saved durably as it is kept).
fn flush(session: &mut Session, writer: Option<&mut DatasetWriter>) -> Result<usize> {
    let Some(writer) = writer else {
        session.episodes.clear();
        return Ok(0);
    };
    let n = session.episodes.len();
    for frames in session.episodes.drain(..) {
        for f in &frames {
            writer.add_frame(f)?;
        }
        writer.save_episode()?;
    }
    Ok(n)
}
