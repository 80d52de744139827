pub fn run(_r: u64) -> anyhow::Result<()> {
    Ok(())
}
