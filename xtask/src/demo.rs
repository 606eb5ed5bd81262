//! placeholder replaced below
use anyhow::Result;
pub fn run() -> Result<()> {
    anyhow::bail!("demo: not yet written")
}
