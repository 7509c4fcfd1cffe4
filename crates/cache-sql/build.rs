//! Rebuilds the crate when a migration changes: `embed_migrations!` reads `migrations/`
//! at compile time, which cargo does not track by itself. `migrations` is a link to the
//! workspace's top-level `migrations/` folder; `cargo package` copies what it points to,
//! so the package carries its migrations and builds outside this repository.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
