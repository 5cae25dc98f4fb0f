//! TEMPORARY: replaced by the logs branch.
pub fn write_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}
pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
}
