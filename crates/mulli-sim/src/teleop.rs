//! Keyboard teleoperation: a person drives the arm one control step per key press and the
//! session records what they did as demonstration episodes. This is the input-device-free
//! core (keys in, actions and frames out); the terminal front end lives in the CLI.

use crate::env::{KitchenEnv, StepResult};
use crate::error::SimError;
use crate::expert::{CLOSE, OPEN};
use mulli_core::{Frame, Value};

/// Translation per key press (m) and rotation per key press (rad).
pub const STEP_POS: f32 = 0.02;
pub const STEP_ROT: f32 = 0.15;

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Move the hand: +x (away from the robot), -x, +y (left), -y, up, down.
    Forward,
    Back,
    Left,
    Right,
    Up,
    Down,
    /// Turn the hand about the vertical axis.
    YawLeft,
    YawRight,
    /// Open or close the gripper.
    ToggleGripper,
    /// Stay still for one step (lets the world settle while recording).
    Wait,
    /// Keep the episode (if recording) and start the next layout.
    Save,
    /// Throw the episode away and start it over on the same layout.
    Discard,
    Quit,
}

impl Command {
    /// Key bindings: w/s forward/back, a/d left/right, r/f up/down, q/e yaw, space gripper,
    /// `.` wait, Enter save, Backspace discard, Esc quit.
    pub fn from_key(key: char) -> Option<Command> {
        Some(match key.to_ascii_lowercase() {
            'w' => Command::Forward,
            's' => Command::Back,
            'a' => Command::Left,
            'd' => Command::Right,
            'r' => Command::Up,
            'f' => Command::Down,
            'q' => Command::YawLeft,
            'e' => Command::YawRight,
            ' ' => Command::ToggleGripper,
            '.' => Command::Wait,
            '\n' => Command::Save,
            '\u{8}' => Command::Discard,
            '\u{1b}' => Command::Quit,
            _ => return None,
        })
    }

    pub const HELP: &'static str = "w/s forward/back  a/d left/right  r/f up/down  q/e turn  space gripper  . wait  Enter save  Backspace discard  Esc quit";
}

/// What happened after a command.
#[derive(Debug)]
pub enum Outcome {
    /// The arm moved one step.
    Stepped(Box<StepResult>),
    /// The episode was saved (recording) or skipped; a new layout is loaded.
    NextEpisode {
        saved: bool,
        success: bool,
    },
    /// The episode was discarded and restarted.
    Restarted,
    Quit,
}

/// A teleoperation session on one environment.
pub struct Session {
    pub env: KitchenEnv,
    gripper_closed: bool,
    seed: u64,
    frames: Vec<Frame>,
    last_success: bool,
    /// Episodes kept so far (frames of each, in order), for the caller to write.
    pub episodes: Vec<Vec<Frame>>,
}

impl Session {
    pub fn new(env: KitchenEnv, seed: u64) -> Self {
        Session {
            env,
            gripper_closed: false,
            seed,
            frames: Vec::new(),
            last_success: false,
            episodes: Vec::new(),
        }
    }

    pub fn gripper_closed(&self) -> bool {
        self.gripper_closed
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Frames of the episode in progress.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }
    pub fn last_success(&self) -> bool {
        self.last_success
    }

    /// The action a movement command stands for.
    pub fn action(&self, cmd: Command) -> Option<[f32; 7]> {
        let g = if self.gripper_closed { CLOSE } else { OPEN };
        let mut a = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, g];
        match cmd {
            Command::Forward => a[0] = STEP_POS,
            Command::Back => a[0] = -STEP_POS,
            Command::Left => a[1] = STEP_POS,
            Command::Right => a[1] = -STEP_POS,
            Command::Up => a[2] = STEP_POS,
            Command::Down => a[2] = -STEP_POS,
            Command::YawLeft => a[5] = STEP_ROT,
            Command::YawRight => a[5] = -STEP_ROT,
            Command::ToggleGripper => a[6] = if self.gripper_closed { OPEN } else { CLOSE },
            Command::Wait => {}
            Command::Save | Command::Discard | Command::Quit => return None,
        }
        Some(a)
    }

    fn restart(&mut self, seed: u64) -> Result<(), SimError> {
        let task = self.env.task().clone();
        let instruction = self.env.instruction().to_string();
        self.env.reset_with(seed, task, &instruction)?;
        self.seed = seed;
        self.gripper_closed = false;
        self.frames.clear();
        self.last_success = false;
        Ok(())
    }

    /// Apply one command. Movement records a frame (observation before the step, the action)
    /// when `record` is set; an episode that ends (success or step budget) moves on by itself.
    pub fn apply(&mut self, cmd: Command, record: bool) -> Result<Outcome, SimError> {
        match cmd {
            Command::Quit => return Ok(Outcome::Quit),
            Command::Discard => {
                self.restart(self.seed)?;
                return Ok(Outcome::Restarted);
            }
            Command::Save => return self.finish(record),
            _ => {}
        }
        let Some(action) = self.action(cmd) else {
            return Ok(Outcome::Quit);
        };
        if cmd == Command::ToggleGripper {
            self.gripper_closed = !self.gripper_closed;
        }
        let obs = self.env.observe();
        let env_state = self.env.environment_state();
        let result = self.env.step(&action)?;
        self.last_success |= result.info.success;
        if record {
            let mut frame = Frame::new(self.env.instruction().to_string())
                .with("observation.state", Value::F32(obs.state))
                .with("observation.environment_state", Value::F32(env_state))
                .with("action", Value::F32(action.to_vec()))
                .with("next.reward", Value::F32(vec![result.reward]))
                .with(
                    "next.done",
                    Value::Bool(vec![result.terminated || result.truncated]),
                )
                .with("next.success", Value::Bool(vec![result.info.success]));
            for (cam, img) in obs.images {
                frame = frame.with(format!("observation.images.{cam}"), Value::U8(img.rgb));
            }
            self.frames.push(frame);
        }
        if result.terminated || result.truncated {
            return self.finish(record);
        }
        Ok(Outcome::Stepped(Box::new(result)))
    }

    /// Keep the episode (when recording and it has frames) and load the next layout.
    fn finish(&mut self, record: bool) -> Result<Outcome, SimError> {
        let success = self.last_success;
        let saved = record && !self.frames.is_empty();
        if saved {
            self.episodes.push(std::mem::take(&mut self.frames));
        }
        self.restart(self.seed + 1)?;
        Ok(Outcome::NextEpisode { saved, success })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnvConfig;

    fn session() -> Session {
        let mut config = EnvConfig::default();
        config.cameras.width = 16;
        config.cameras.height = 16;
        let task = crate::tasks::task("pick_up_apple").unwrap();
        Session::new(
            KitchenEnv::new(config, task, 5, "pick up the apple").unwrap(),
            5,
        )
    }

    #[test]
    fn keys_map_to_commands_and_actions() {
        assert_eq!(Command::from_key('W'), Some(Command::Forward));
        assert_eq!(Command::from_key(' '), Some(Command::ToggleGripper));
        assert_eq!(Command::from_key('z'), None);
        let s = session();
        assert_eq!(s.action(Command::Up).unwrap()[2], STEP_POS);
        assert_eq!(s.action(Command::Right).unwrap()[1], -STEP_POS);
        assert_eq!(s.action(Command::ToggleGripper).unwrap()[6], CLOSE);
        assert!(s.action(Command::Save).is_none());
    }

    #[test]
    fn key_presses_move_the_hand_and_record_frames() {
        let mut s = session();
        let z0 = s.env.scene().tcp().translation.z;
        for _ in 0..3 {
            assert!(matches!(
                s.apply(Command::Down, true).unwrap(),
                Outcome::Stepped(_)
            ));
        }
        let z1 = s.env.scene().tcp().translation.z;
        assert!(
            (z0 - z1 - 3.0 * STEP_POS as f64).abs() < 0.01,
            "{z0} -> {z1}"
        );
        s.apply(Command::ToggleGripper, true).unwrap();
        assert!(s.gripper_closed());
        assert_eq!(s.frames(), 4);
        // Discard restarts the same layout; Save keeps the episode and moves on.
        assert!(matches!(
            s.apply(Command::Discard, true).unwrap(),
            Outcome::Restarted
        ));
        assert_eq!((s.frames(), s.seed()), (0, 5));
        s.apply(Command::Forward, true).unwrap();
        let out = s.apply(Command::Save, true).unwrap();
        assert!(matches!(
            out,
            Outcome::NextEpisode {
                saved: true,
                success: false
            }
        ));
        assert_eq!(s.episodes.len(), 1);
        assert_eq!(s.seed(), 6);
        assert!(matches!(
            s.apply(Command::Quit, true).unwrap(),
            Outcome::Quit
        ));
    }
}
