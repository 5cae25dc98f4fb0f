// Not called yet: the master and workers will use it.
#[allow(dead_code, unused_imports)]
mod logging;

fn main() {}
