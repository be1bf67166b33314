//! Update schedules (`spec.updatePolicy`, as Flight Control has them): a cron
//! expression marks the times an update may start, `startGraceDuration` how long
//! after such a time it still may. Pure: the agent passes the time.

use std::time::Duration;

use time::OffsetDateTime;

/// Why a schedule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("cron expression {expression:?}: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// What is wrong.
        reason: String,
    },
    /// The duration does not parse.
    #[error("duration {text:?}: {reason}")]
    Duration {
        /// The text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not one this implementation evaluates.
    #[error(
        "time zone {0:?} is not supported: use UTC or GMT (the agent carries no time zone database)"
    )]
    TimeZone(String),
}

/// A parsed five-field cron expression (minute, hour, day of month, month, day of
/// week) with `*`, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    fields: [Vec<bool>; 5],
}

const RANGES: [(u32, u32, &str); 5] = [
    (0, 59, "minute"),
    (0, 23, "hour"),
    (1, 31, "day of month"),
    (1, 12, "month"),
    (0, 6, "day of week"),
];

impl Cron {
    /// Parses `expression`.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason,
        };
        let parts: Vec<&str> = expression.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(error(format!("{} fields, expected 5", parts.len())));
        }
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (index, (part, (low, high, name))) in parts.iter().zip(RANGES).enumerate() {
            let mut allowed = vec![false; (high + 1) as usize];
            for item in part.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((range, step)) => {
                        let step: u32 = step
                            .parse()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| error(format!("{name}: bad step in {item:?}")))?;
                        (range, step)
                    }
                    None => (item, 1),
                };
                let number = |text: &str| -> Result<u32, ScheduleError> {
                    text.parse::<u32>()
                        .ok()
                        .filter(|n| (low..=high).contains(n))
                        .ok_or_else(|| {
                            error(format!("{name}: {text:?} is not a number in {low}-{high}"))
                        })
                };
                let (from, to) = if range == "*" {
                    (low, high)
                } else if let Some((a, b)) = range.split_once('-') {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b {
                        return Err(error(format!("{name}: range {range:?} runs backwards")));
                    }
                    (a, b)
                } else {
                    let a = number(range)?;
                    (a, if step > 1 { high } else { a })
                };
                let mut value = from;
                while value <= to {
                    allowed[value as usize] = true;
                    value += step;
                }
            }
            fields[index] = allowed;
        }
        Ok(Self { fields })
    }

    /// Whether the minute of `at` matches.
    pub fn matches(&self, at: OffsetDateTime) -> bool {
        let values = [
            u32::from(at.minute()),
            u32::from(at.hour()),
            u32::from(at.day()),
            u32::from(u8::from(at.month())),
            u32::from(at.weekday().number_days_from_sunday()),
        ];
        self.fields
            .iter()
            .zip(values)
            .all(|(allowed, value)| allowed.get(value as usize).copied().unwrap_or(false))
    }
}

/// A parsed `UpdateSchedule`: `at`, `startGraceDuration`, and the time zone (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When a window opens.
    pub at: Cron,
    /// How long it stays open.
    pub grace: Duration,
}

/// The longest `startGraceDuration` accepted.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Schedule {
    /// Parses the fields of an `UpdateSchedule`.
    pub fn parse(
        at: &str,
        time_zone: Option<&str>,
        start_grace_duration: &str,
    ) -> Result<Self, ScheduleError> {
        match time_zone {
            None | Some("UTC" | "GMT" | "Etc/UTC") => {}
            Some(other) => return Err(ScheduleError::TimeZone(other.to_owned())),
        }
        let grace = parse_duration(start_grace_duration)?;
        if grace > MAX_GRACE {
            return Err(ScheduleError::Duration {
                text: start_grace_duration.to_owned(),
                reason: "longer than 168h".into(),
            });
        }
        Ok(Self {
            at: Cron::parse(at)?,
            grace,
        })
    }

    /// Whether `now` is in a window: a matching minute at most `grace` before it
    /// (the matching minute itself is always open).
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        let now = now.to_offset(time::UtcOffset::UTC);
        let minutes = self.grace.as_secs() / 60;
        (0..=minutes).any(|back| {
            let at = now - time::Duration::minutes(i64::try_from(back).unwrap_or(i64::MAX));
            self.at.matches(at)
        })
    }

    /// The next time a window opens after `now`, searched up to 8 days ahead.
    pub fn next_opening(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let start = now.replace_second(0).ok()?.replace_nanosecond(0).ok()?;
        (1..=8 * 24 * 60)
            .map(|m| start + time::Duration::minutes(m))
            .find(|at| self.at.matches(*at))
    }
}

/// Parses a Go-style duration (`90s`, `30m`, `1h30m`); whole seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    let error = |reason: &str| ScheduleError::Duration {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(error("empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(error("units are h, m and s")),
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| error("a unit without a number"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(error("a number without a unit"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cron_fields_ranges_lists_and_steps() {
        let cron = Cron::parse("*/15 0-8,16-23 * * 1-5").expect("parses");
        assert!(cron.matches(datetime!(2026-12-03 07:30 UTC))); // a Thursday
        assert!(!cron.matches(datetime!(2026-12-03 07:31 UTC)));
        assert!(!cron.matches(datetime!(2026-12-03 12:00 UTC)));
        assert!(!cron.matches(datetime!(2026-12-06 07:30 UTC))); // a Sunday
        for (bad, expected) in [
            ("* * * *", "4 fields"),
            ("60 * * * *", "minute: \"60\""),
            ("* 5-2 * * *", "runs backwards"),
            ("*/0 * * * *", "bad step"),
            ("* * * x *", "month"),
        ] {
            let error = Cron::parse(bad).expect_err(bad).to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn a_window_opens_at_a_match_and_lasts_the_grace() {
        let schedule = Schedule::parse("0 3 * * *", Some("UTC"), "1h").expect("parses");
        assert!(schedule.is_open(datetime!(2026-12-03 03:00 UTC)));
        assert!(schedule.is_open(datetime!(2026-12-03 03:59:59 UTC)));
        assert!(schedule.is_open(datetime!(2026-12-03 04:00 UTC)));
        assert!(!schedule.is_open(datetime!(2026-12-03 04:01 UTC)));
        assert!(!schedule.is_open(datetime!(2026-12-03 02:59 UTC)));
        assert_eq!(
            schedule.next_opening(datetime!(2026-12-03 04:01 UTC)),
            Some(datetime!(2026-12-04 03:00 UTC))
        );
        assert_eq!(
            Schedule::parse("0 3 * * *", Some("Europe/Paris"), "1h").expect_err("zone"),
            ScheduleError::TimeZone("Europe/Paris".into())
        );
        for bad in ["", "1x", "5", "h", "200h"] {
            assert!(Schedule::parse("* * * * *", None, bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("1h30m5s").expect("parses"),
            Duration::from_secs(5405)
        );
    }
}
