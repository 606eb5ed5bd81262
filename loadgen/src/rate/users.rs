//! Closed-model settings: think times, user groups (`--group`) and scenario files.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::{RateError, parse_duration};
use crate::targets::parse_absolute_url;

/// Pause between a virtual user's requests, uniform in `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinkTime {
    pub min: Duration,
    pub max: Duration,
}

impl ThinkTime {
    /// Uniform in `min..=max`; the caller supplies a uniformly random `u64`.
    pub fn sample(&self, rng_u64: u64) -> Duration {
        let span_ns = (self.max.saturating_sub(self.min).as_nanos()).min(u64::MAX as u128 - 1);
        // Multiply-shift maps the u64 onto 0..=span without the bias of `%` (Lemire, "Fast
        // Random Integer Generation in an Interval", 2019); the leftover bias is < 2^-64.
        let offset_ns = ((rng_u64 as u128) * (span_ns + 1)) >> 64;
        self.min + Duration::from_nanos(offset_ns as u64)
    }
}

impl FromStr for ThinkTime {
    type Err = RateError;

    /// `2s` (fixed) or `4s..10s` (uniform range).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let bad = |reason: String| RateError::InvalidThinkTime {
            input: input.into(),
            reason,
        };
        let (min, max) = match input.split_once("..") {
            Some((min, max)) => (min.trim(), max.trim()),
            None => (input, input),
        };
        if min.is_empty() || max.is_empty() {
            let which = if min.is_empty() { "minimum" } else { "maximum" };
            return Err(bad(format!("missing {which}")));
        }
        let min = parse_duration(min).map_err(&bad)?;
        let max = parse_duration(max).map_err(&bad)?;
        if min > max {
            return Err(RateError::ThinkTimeRange {
                input: input.into(),
            });
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for ThinkTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.min))?;
        if self.max != self.min {
            write!(f, "..{}", humantime::format_duration(self.max))?;
        }
        Ok(())
    }
}

/// A closed-model group: `users` virtual users, each sending a request, waiting for the
/// response, then thinking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserGroup {
    pub name: String,
    pub users: u32,
    /// `0s` when not given: users send back to back.
    pub think: ThinkTime,
    /// Overrides the targets for this group (e.g. a polling endpoint).
    pub url: Option<http::Uri>,
    /// Users start evenly spread over this time instead of all at once.
    pub ramp_up: Option<Duration>,
}

const GROUP_KEYS: [&str; 4] = ["users", "think", "url", "ramp"];

impl FromStr for UserGroup {
    type Err = RateError;

    /// `NAME:users=N[:think=D|D..D][:url=URL][:ramp=D]`, e.g.
    /// `passive:users=1000:think=2s:url=https://host/poll:ramp=30s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default().trim();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(RateError::GroupName { name: name.into() });
        }
        let group = || name.to_owned();
        // A URL contains `:` itself (`https://host:8443/x`), so a piece that does not
        // start with a known `key=` continues the `url=` value before it.
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for part in parts {
            let key = part.split_once('=').map(|(key, _)| key.trim());
            match (key, pairs.last_mut()) {
                (Some(key), _) if GROUP_KEYS.contains(&key) => {
                    if pairs.iter().any(|(seen, _)| *seen == key) {
                        let key = key.into();
                        return Err(RateError::GroupDuplicateKey {
                            group: group(),
                            key,
                        });
                    }
                    let value = part.split_once('=').map_or("", |(_, v)| v).trim();
                    pairs.push((key, value.to_owned()));
                }
                (_, Some(("url", value))) => {
                    value.push(':');
                    value.push_str(part);
                }
                (Some(key), _) if !key.is_empty() => {
                    let key = key.into();
                    return Err(RateError::GroupUnknownKey {
                        group: group(),
                        key,
                    });
                }
                _ => {
                    return Err(RateError::GroupPart {
                        group: group(),
                        part: part.into(),
                    });
                }
            }
        }
        let mut users = None;
        let mut think = ThinkTime {
            min: Duration::ZERO,
            max: Duration::ZERO,
        };
        let mut url = None;
        let mut ramp_up = None;
        for (key, value) in pairs {
            let bad = |reason: String, expected| RateError::GroupValue {
                group: group(),
                part: format!("{key}={value}"),
                reason,
                expected,
            };
            match key {
                "users" => {
                    let count: u32 = value.parse().map_err(|err: std::num::ParseIntError| {
                        bad(
                            err.to_string(),
                            "a whole number of users from 1 to 4294967295",
                        )
                    })?;
                    if count == 0 {
                        return Err(bad("no users".into(), "at least 1 user"));
                    }
                    users = Some(count);
                }
                "think" => {
                    think = value.parse().map_err(|err: RateError| {
                        bad(err.to_string(), "a think time such as `2s` or `4s..10s`")
                    })?;
                }
                "url" => {
                    let uri = parse_absolute_url(&value).map_err(|error| RateError::GroupUrl {
                        group: group(),
                        error,
                    })?;
                    url = Some(uri);
                }
                _ => {
                    let duration = parse_duration(&value)
                        .map_err(|reason| bad(reason, "a duration such as `30s`"))?;
                    ramp_up = Some(duration);
                }
            }
        }
        let users = users.ok_or_else(|| RateError::GroupMissingUsers { group: group() })?;
        Ok(Self {
            name: name.into(),
            users,
            think,
            url,
            ramp_up,
        })
    }
}

impl fmt::Display for UserGroup {
    /// The syntax [`UserGroup::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:users={}:think={}", self.name, self.users, self.think)?;
        if let Some(url) = &self.url {
            write!(f, ":url={url}")?;
        }
        if let Some(ramp_up) = self.ramp_up {
            write!(f, ":ramp={}", humantime::format_duration(ramp_up))?;
        }
        Ok(())
    }
}

/// Parses a scenario file: one [`UserGroup`] per line, `#` comment lines, blank lines.
pub fn parse_scenario(text: &str, origin: &Path) -> Result<Vec<UserGroup>, RateError> {
    let mut groups: Vec<(usize, UserGroup)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let group: UserGroup = line.parse().map_err(|error| RateError::Scenario {
            file: origin.to_owned(),
            line: line_number,
            error: Box::new(error),
        })?;
        if let Some((first_line, _)) = groups.iter().find(|(_, g)| g.name == group.name) {
            return Err(RateError::DuplicateGroup {
                file: origin.to_owned(),
                line: line_number,
                name: group.name,
                first_line: *first_line,
            });
        }
        groups.push((line_number, group));
    }
    if groups.is_empty() {
        return Err(RateError::NoGroups {
            file: origin.to_owned(),
        });
    }
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}

/// Reads and parses a scenario file (see [`parse_scenario`]). The CLI reads the file
/// itself (a read error there is `ConfigError::Read`, exit 1); the tests use this.
#[cfg(test)]
pub fn load_scenario(path: &Path) -> Result<Vec<UserGroup>, RateError> {
    let text = std::fs::read_to_string(path).map_err(|source| RateError::ReadScenario {
        file: path.to_owned(),
        source,
    })?;
    parse_scenario(&text, path)
}
