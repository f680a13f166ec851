//! placeholder
use crate::store::Store;
pub async fn run(_store: &Store) -> anyhow::Result<()> {
    Ok(())
}
