//! `sqlx::migrate!` embeds `migrations/` at compile time, but a proc macro cannot tell cargo which
//! files it read: without this, editing a migration leaves the old one embedded until something
//! else rebuilds the crate (sqlx's documentation recommends exactly this line).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
