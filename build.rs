//! Rebuilds when a migration is added or changed: the migrations are embedded at compile
//! time, and a new file alone would not make cargo recompile the store.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
