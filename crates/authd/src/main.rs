//! authd (in progress).
fn main() {}
