//! Update schedules (`spec.updatePolicy`, as Flight Control has them): a cron
//! expression marks the times an update may start, `startGraceDuration` how long
//! after such a time it still may, both read in the schedule's `timeZone`. Pure but
//! for the time zone database: the agent passes the time, and an IANA zone is read
//! from the host's zoneinfo (`/usr/share/zoneinfo`, or `TZDIR`).
//!
//! Wall times are matched in the zone: across a daylight-saving change, a time
//! that does not exist that day (skipped forward) opens no window, and one that
//! happens twice (set back) opens a window at each.

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
    /// The time zone is not in this host's time zone database.
    #[error(
        "time zone {0:?} is not known here: use an IANA name found in the host's zoneinfo database (e.g. Europe/Paris), \"UTC\", \"GMT\" or \"Local\""
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

/// The time zone a schedule is read in: `UTC`/`GMT`, `Local` (the host's own, as
/// Flight Control's default), or an IANA name.
#[derive(Debug, Clone)]
pub struct ScheduleZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl PartialEq for ScheduleZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ScheduleZone {}

/// The zone name an absent `timeZone` means, as in Flight Control.
pub const DEFAULT_TIME_ZONE: &str = "Local";

impl ScheduleZone {
    /// The zone called `name`; `None` is [`DEFAULT_TIME_ZONE`]. `Local` is the
    /// host's zone, UTC when the host names none.
    pub fn named(name: Option<&str>) -> Result<Self, ScheduleError> {
        let name = name.unwrap_or(DEFAULT_TIME_ZONE);
        let zone = match name {
            "UTC" | "GMT" | "Etc/UTC" => jiff::tz::TimeZone::UTC,
            "Local" => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
            // Only AREA/LOCATION names: three-letter abbreviations are ambiguous.
            other if other.contains('/') => jiff::tz::TimeZone::get(other)
                .map_err(|_| ScheduleError::TimeZone(other.to_owned()))?,
            other => return Err(ScheduleError::TimeZone(other.to_owned())),
        };
        Ok(Self {
            name: name.to_owned(),
            zone,
        })
    }

    /// The zone's name as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `at` as a wall time in this zone.
    pub fn wall_time(&self, at: OffsetDateTime) -> OffsetDateTime {
        let offset = jiff::Timestamp::from_second(at.unix_timestamp())
            .ok()
            .map(|instant| self.zone.to_offset(instant).seconds())
            .and_then(|seconds| time::UtcOffset::from_whole_seconds(seconds).ok())
            .unwrap_or(time::UtcOffset::UTC);
        at.to_offset(offset)
    }
}

/// A parsed `UpdateSchedule`: `at`, `startGraceDuration`, and the time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When a window opens.
    pub at: Cron,
    /// How long it stays open.
    pub grace: Duration,
    /// The zone `at` is read in.
    pub zone: ScheduleZone,
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
        let zone = ScheduleZone::named(time_zone)?;
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
            zone,
        })
    }

    /// Whether `now` is in a window: a matching minute at most `grace` before it
    /// (the matching minute itself is always open).
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        let minutes = self.grace.as_secs() / 60;
        (0..=minutes).any(|back| {
            let at = now - time::Duration::minutes(i64::try_from(back).unwrap_or(i64::MAX));
            self.at.matches(self.zone.wall_time(at))
        })
    }

    /// The next time a window opens after `now`, searched up to 8 days ahead.
    pub fn next_opening(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let start = now.replace_second(0).ok()?.replace_nanosecond(0).ok()?;
        (1..=8 * 24 * 60)
            .map(|m| start + time::Duration::minutes(m))
            .find(|at| self.at.matches(self.zone.wall_time(*at)))
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
        for bad in ["", "1x", "5", "h", "200h"] {
            assert!(Schedule::parse("* * * * *", None, bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("1h30m5s").expect("parses"),
            Duration::from_secs(5405)
        );
    }

    /// Reads the host's zoneinfo; says so and passes where it has none (a device
    /// image without tzdata), since then no IANA zone can be evaluated at all.
    fn paris() -> Option<ScheduleZone> {
        let zone = ScheduleZone::named(Some("Europe/Paris")).ok();
        if zone.is_none() {
            eprintln!("SKIPPED: no zoneinfo database on this host (install tzdata)");
        }
        zone
    }

    #[test]
    fn windows_are_read_in_their_zone_across_daylight_saving() {
        let Some(_) = paris() else { return };
        let schedule = Schedule::parse("0 3 * * *", Some("Europe/Paris"), "30m").expect("parses");
        // Winter: Paris is UTC+1, so 03:00 there is 02:00 UTC.
        assert!(schedule.is_open(datetime!(2026-12-03 02:00 UTC)));
        assert!(!schedule.is_open(datetime!(2026-12-03 03:00 UTC)));
        // Summer: UTC+2, 01:00 UTC.
        assert!(schedule.is_open(datetime!(2026-07-03 01:10 UTC)));
        assert!(!schedule.is_open(datetime!(2026-07-03 02:00 UTC)));
        assert_eq!(
            schedule.next_opening(datetime!(2026-12-03 04:00 UTC)),
            Some(datetime!(2026-12-04 02:00 UTC))
        );
        // 2026-03-29 02:30 does not exist in Paris (clocks go from 02:00 to 03:00):
        // no window that day; 2026-10-25 02:30 happens twice: two windows.
        let skipped = Schedule::parse("30 2 * * *", Some("Europe/Paris"), "0s").expect("parses");
        assert_eq!(
            skipped.next_opening(datetime!(2026-03-28 12:00 UTC)),
            Some(datetime!(2026-03-30 00:30 UTC))
        );
        assert_eq!(
            skipped.next_opening(datetime!(2026-10-24 12:00 UTC)),
            Some(datetime!(2026-10-25 00:30 UTC))
        );
        assert_eq!(
            skipped.next_opening(datetime!(2026-10-25 00:31 UTC)),
            Some(datetime!(2026-10-25 01:30 UTC))
        );
    }

    #[test]
    fn unknown_and_ambiguous_zones_are_refused_by_name() {
        for bad in ["Mars/Olympus_Mons", "CET5", "EST", ""] {
            assert_eq!(
                Schedule::parse("0 3 * * *", Some(bad), "1h").expect_err(bad),
                ScheduleError::TimeZone(bad.into()),
                "{bad}"
            );
        }
        for good in ["UTC", "GMT", "Local"] {
            let schedule = Schedule::parse("0 3 * * *", Some(good), "1h").expect(good);
            assert_eq!(schedule.zone.name(), good);
        }
        assert_eq!(
            Schedule::parse("0 3 * * *", None, "1h")
                .expect("default")
                .zone
                .name(),
            DEFAULT_TIME_ZONE
        );
    }
}
