//! What a rule concludes: a [`Verdict`] with its [`Confidence`] and [`Evidence`].
use serde::{Deserialize, Serialize, Serializer};

/// How sure a verdict is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    High,
    Medium,
    Low,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// A confidence level and why, in one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confidence {
    pub level: Level,
    pub why: String,
}

impl Confidence {
    pub fn new(level: Level, why: impl Into<String>) -> Self {
        Self {
            level,
            why: why.into(),
        }
    }
}

/// Where a piece of evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Kernel,
    Loadgen,
    Host,
    /// The raw backend's capture.
    Wire,
    /// The analyzer's own TLS handshake after the run (`tls_probe`): what the server
    /// presented to it, not necessarily to the client.
    Probe,
}

/// One fact a verdict used. Serialized with a wall-clock `at` when it has a time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Evidence {
    pub source: Source,
    #[serde(default)]
    pub ts_unix_ns: Option<u64>,
    pub what: String,
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            source: Source,
            #[serde(skip_serializing_if = "Option::is_none")]
            ts_unix_ns: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            at: Option<String>,
            what: &'a str,
        }
        View {
            source: self.source,
            ts_unix_ns: self.ts_unix_ns,
            at: self.ts_unix_ns.map(events::time::rfc3339_ns),
            what: &self.what,
        }
        .serialize(s)
    }
}

impl Evidence {
    pub fn kernel(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Kernel,
            ts_unix_ns: Some(ts_unix_ns),
            what: what.into(),
        }
    }

    pub fn loadgen(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Loadgen,
            ts_unix_ns: (ts_unix_ns != 0).then_some(ts_unix_ns),
            what: what.into(),
        }
    }

    pub fn wire(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Wire,
            ts_unix_ns: Some(ts_unix_ns),
            what: what.into(),
        }
    }

    /// The certificate probe's, at its handshake (Unix seconds).
    pub fn probe(unix_s: i64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Probe,
            ts_unix_ns: u64::try_from(unix_s)
                .ok()
                .map(|s| s.saturating_mul(1_000_000_000)),
            what: what.into(),
        }
    }

    pub fn host(what: impl Into<String>) -> Self {
        Self {
            source: Source::Host,
            ts_unix_ns: None,
            what: what.into(),
        }
    }
}

/// A rule's conclusion about one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Stable snake_case cause id.
    pub cause: &'static str,
    /// Splits a cause in the report (a code, a status, a reason).
    pub detail: Option<String>,
    /// One line, the same for every failure of the cause and detail.
    pub title: String,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
    /// What to look at or change.
    pub hint: String,
}
