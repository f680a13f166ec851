//! placeholder
pub async fn run(_store: &crate::Store, _people: &crate::People) -> anyhow::Result<()> {
    Ok(())
}
