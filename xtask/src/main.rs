//! `cargo xtask`: project tasks (migrations, seeding, benchmarks).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no task yet")
}
