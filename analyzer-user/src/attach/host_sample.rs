//! The host's counters sampled at the start and the end of a session, and its ports and
//! sockets at the end; what cannot be read is kept as an error line, never fatal.
use crate::host::{
    self, CensusSummary, CounterDeltas, PortPressure, PortRange, Snapshot, SocketCensus,
};

/// The host's counters at the start of a session.
#[derive(Debug)]
pub(super) struct HostSample {
    before: Option<Snapshot>,
    errors: Vec<String>,
}

/// The host facts over a session.
#[derive(Debug)]
pub(super) struct HostFacts {
    pub counters: Option<CounterDeltas>,
    pub port_range: Option<PortRange>,
    pub census: Option<CensusSummary>,
    pub worst_port_pressure: Option<PortPressure>,
    pub errors: Vec<String>,
}

impl HostSample {
    pub fn start() -> Self {
        let mut errors = Vec::new();
        let before = Snapshot::read()
            .map_err(|e| errors.push(format!("host counters at start: {e}")))
            .ok();
        Self { before, errors }
    }

    /// Samples again and reads the ports and sockets.
    pub fn finish(self) -> HostFacts {
        let Self { before, mut errors } = self;
        let counters = match (&before, Snapshot::read()) {
            (Some(b), Ok(a)) => Some(host::delta(b, &a)),
            (_, Err(e)) => {
                errors.push(format!("host counters at end: {e}"));
                None
            }
            (None, Ok(_)) => None,
        };
        let port_range = PortRange::read()
            .map_err(|e| errors.push(format!("ephemeral port range: {e}")))
            .ok();
        let census = SocketCensus::read()
            .map_err(|e| errors.push(format!("socket census: {e}")))
            .ok();
        let worst_port_pressure = match (&port_range, &census) {
            (Some(r), Some(c)) => host::worst_port_pressure(r, c),
            _ => None,
        };
        HostFacts {
            counters,
            port_range,
            census: census.map(|c| c.summary(5)),
            worst_port_pressure,
            errors,
        }
    }
}
