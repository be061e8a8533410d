//! The counter rules: what each reading of a cumulative counter adds to its use, when meters
//! send what real meters send (momentary zeros, backward jitter, absurd one-off values, resets,
//! replacements and register wraps).
//!
//! Each reading is decided from a bounded window of its neighbours ([`WINDOW`] readings either
//! side) and the running level (the highest value counted since the last reset), so its
//! contribution does not depend on where bucket edges fall: a rollup reads a few readings past
//! its range's edges ([`CONTEXT_BEFORE`], [`WINDOW`] after) and gets the same decisions as a
//! walk over the whole history.
//!
//! Thresholds come from the series' own typical step (the median of the increases between the
//! neighbours in the window, not counting the reading being decided):
//!
//! - **glitch**: a reading below the level after which, within [`WINDOW`] readings, the counter
//!   is back at or above the level. It adds nothing; the use is measured across it.
//! - **jitter**: a backward step no larger than the jitter tolerance (twice the typical step, at
//!   least 0.1% of the level). It adds nothing and the level stays at the highest value seen,
//!   so the next increase is measured from there and no unit is counted twice.
//! - **spike**: a reading far above the level (more than ten tolerances) whose next neighbour
//!   falls back to within a quarter of the rise from the level. It adds nothing.
//! - **wrap**: a drop from just under a power of ten (at least 90% of it, and at least 100) to
//!   just above zero (under 10% of it), or any drop when the register's size is known; the use
//!   across the wrap (size minus level, plus the new value) counts in full.
//! - **reset**: a drop to near zero (at most 5% of the level, or ten typical steps) that does
//!   not recover: the counter restarted, and its new value is use since the restart. A drop
//!   that neither recovers nor lands near zero (a replacement meter that starts elsewhere)
//!   rebases the level without adding anything.
//!
//! A reading set aside moves its interval's use to the next reading counted (the use is
//! measured from the level to that reading), as last-minus-first does. Decisions that lacked
//! a full window after the reading (the newest readings of a series) are provisional: a later
//! reading may still turn a reset into a glitch.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Neighbours read after a reading to decide it (and before it, for its typical step).
pub const WINDOW: usize = 3;

/// Readings a rollup reads before its range so the level at the range's start is the one a
/// walk over the whole history reaches.
pub const CONTEXT_BEFORE: usize = 3 * WINDOW;

/// What the rules made of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Counted: the increase from the level (zero for the first reading).
    Counted,
    /// Below the level, and the counter came back: set aside.
    Glitch,
    /// A small backward step: set aside, the level kept.
    Jitter,
    /// Far above both neighbours: set aside.
    Spike,
    /// The counter restarted (or was replaced): counted from its new start.
    Reset,
    /// A fixed-width register wrapped: the use across the wrap counted.
    Wrap,
}

impl Verdict {
    /// The name used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::Glitch => "glitch",
            Self::Jitter => "jitter",
            Self::Spike => "spike",
            Self::Reset => "reset",
            Self::Wrap => "wrap",
        }
    }

    /// Whether the reading's own value was set aside (it added nothing and moved no level).
    pub fn set_aside(self) -> bool {
        matches!(self, Self::Glitch | Self::Jitter | Self::Spike)
    }
}

/// One reading, decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided {
    /// The reading's time.
    pub time: DateTime<Utc>,
    /// The reading's value, as stored.
    pub value: f64,
    /// What the rules made of it.
    pub verdict: Verdict,
    /// The use it adds, at its time.
    pub added: f64,
    /// Whether fewer than [`WINDOW`] readings followed it (a later one may change the decision).
    pub provisional: bool,
    /// The running level after it (`None` while no reading has set one): with the raw values
    /// before a point, all the rules carry from one reading to the next (see
    /// [`CounterRules::resume`]).
    pub level: Option<f64>,
}

/// The counter rules over one series, fed in time order.
#[derive(Debug, Default)]
pub struct CounterRules {
    /// The register's size when known (a 5-digit index wraps at 100,000).
    register: Option<f64>,
    level: Option<f64>,
    /// The last [`WINDOW`] raw values before the one being decided.
    before: VecDeque<f64>,
    /// Readings waiting for their window.
    pending: VecDeque<(DateTime<Utc>, f64)>,
}

impl CounterRules {
    /// Rules that infer a register's size from its wraps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rules for a register of a known size (wraps at `size`).
    pub fn with_register(size: f64) -> Self {
        Self {
            register: (size.is_finite() && size > 0.0).then_some(size),
            ..Self::default()
        }
    }

    /// Rules that carry on from a point of a series, as a walk from its first reading would:
    /// `level` is the level after the last reading before the point, `before` the raw values of
    /// the (up to [`WINDOW`]) readings just before it, oldest first. Stored rollups recompute a
    /// stretch of a counter this way without walking its whole history.
    pub fn resume(register: Option<f64>, level: Option<f64>, before: &[f64]) -> Self {
        let mut rules = match register {
            Some(size) => Self::with_register(size),
            None => Self::new(),
        };
        rules.level = level;
        let skip = before.len().saturating_sub(WINDOW);
        rules.before.extend(before[skip..].iter().copied());
        rules
    }

    /// The register's size, when known.
    pub fn register(&self) -> Option<f64> {
        self.register
    }

    /// Adds the next reading; answers the readings decided now.
    pub fn push(&mut self, time: DateTime<Utc>, value: f64, out: &mut Vec<Decided>) {
        self.pending.push_back((time, value));
        while self.pending.len() > WINDOW {
            out.push(self.decide_front(false));
        }
    }

    /// Decides the readings still waiting (the newest), provisionally.
    pub fn finish(&mut self, out: &mut Vec<Decided>) {
        while !self.pending.is_empty() {
            out.push(self.decide_front(true));
        }
    }

    fn decide_front(&mut self, short: bool) -> Decided {
        let (time, value) = self.pending[0];
        // At most WINDOW readings follow: kept on the stack, as rollups decide every reading.
        let mut window = [0.0; WINDOW];
        let n = self.pending.len() - 1;
        for (slot, (_, v)) in window.iter_mut().zip(self.pending.iter().skip(1)) {
            *slot = *v;
        }
        let after = &window[..n];
        let typical = typical_step(&self.before, after);
        let (verdict, added) = self.judge(value, after, typical);
        if self.before.len() == WINDOW {
            self.before.pop_front();
        }
        self.before.push_back(value);
        self.pending.pop_front();
        Decided {
            time,
            value,
            verdict,
            added,
            provisional: short && after.len() < WINDOW,
            level: self.level,
        }
    }

    fn judge(&mut self, value: f64, after: &[f64], typical: f64) -> (Verdict, f64) {
        let Some(level) = self.level else {
            // The first reading sets the level, unless the readings after it agree with each
            // other and put it near zero (a momentary zero) or far above them (a spike).
            let agree = after.len() >= 2 && spread(after) <= tolerance(after[0], typical);
            if agree && after[0] > 0.0 && value <= 0.05 * after[0] {
                return (Verdict::Glitch, 0.0);
            }
            let far = 10.0 * tolerance(after.first().copied().unwrap_or(value), typical);
            if agree && value - after[0] > far && value > 2.0 * after[0].abs() {
                return (Verdict::Spike, 0.0);
            }
            self.level = Some(value);
            return (Verdict::Counted, 0.0);
        };
        let tol = tolerance(level, typical);
        if value >= level {
            let rise = value - level;
            let falls_back = after
                .first()
                .is_some_and(|next| (next - level).abs() <= rise / 4.0);
            if rise > 10.0 * tol && falls_back {
                return (Verdict::Spike, 0.0);
            }
            self.level = Some(value);
            return (Verdict::Counted, rise);
        }
        if after.iter().any(|next| *next >= level) {
            let verdict = if level - value <= tol {
                Verdict::Jitter
            } else {
                Verdict::Glitch
            };
            return (verdict, 0.0);
        }
        if let Some(size) = self.register.or_else(|| inferred_register(level, value)) {
            self.level = Some(value);
            return (Verdict::Wrap, (size - level).max(0.0) + value);
        }
        if level - value <= tol {
            return (Verdict::Jitter, 0.0);
        }
        self.level = Some(value);
        if value <= (0.05 * level).max(10.0 * typical) {
            (Verdict::Reset, value.max(0.0))
        } else {
            (Verdict::Reset, 0.0)
        }
    }
}

/// The decisions about `readings` (one counter series in time order), made with up to
/// [`CONTEXT_BEFORE`] readings before them and [`WINDOW`] after, as a rollup makes them.
pub fn decide(
    before: &[(DateTime<Utc>, f64)],
    readings: &[(DateTime<Utc>, f64)],
    after: &[(DateTime<Utc>, f64)],
) -> Vec<Decided> {
    let mut rules = CounterRules::new();
    let mut out = Vec::with_capacity(before.len() + readings.len() + after.len());
    for (t, v) in before.iter().chain(readings).chain(after) {
        rules.push(*t, *v, &mut out);
    }
    rules.finish(&mut out);
    out.into_iter()
        .skip(before.len())
        .take(readings.len())
        .collect()
}

/// The median increase between consecutive neighbours (those before, those after), zero when
/// there is none.
fn typical_step(before: &VecDeque<f64>, after: &[f64]) -> f64 {
    let mut steps = [0.0; 2 * WINDOW];
    let mut n = 0;
    let before_steps = before.iter().zip(before.iter().skip(1));
    let after_steps = after.iter().zip(after.iter().skip(1));
    for (a, b) in before_steps.chain(after_steps) {
        if b - a > 0.0 {
            steps[n] = b - a;
            n += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let steps = &mut steps[..n];
    steps.sort_by(f64::total_cmp);
    steps[n / 2]
}

/// How far a value may step back and still be jitter: twice the typical step, at least 0.1% of
/// the level.
fn tolerance(level: f64, typical: f64) -> f64 {
    (2.0 * typical).max(1e-3 * level.abs()).max(1e-9)
}

fn spread(values: &[f64]) -> f64 {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    hi - lo
}

/// The register size a drop from `level` to `value` implies: a power of ten (at least 100) that
/// `level` is just under (90% or more of it) and `value` just above zero (under 10% of it).
fn inferred_register(level: f64, value: f64) -> Option<f64> {
    if level < 90.0 || value < 0.0 {
        return None;
    }
    let size = 10f64.powi(level.log10().floor() as i32 + 1);
    (level >= 0.9 * size && value < 0.1 * size).then_some(size)
}

#[cfg(test)]
mod tests;
