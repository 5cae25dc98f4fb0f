//! Records which Python the embedded interpreter is (the binary's, not the Python
//! package's): the binary starts it from that interpreter's own home, never from a
//! `python3` found on `PATH`.

fn main() {
    let config = pyo3_build_config::get();
    let python = config.executable().unwrap_or("/usr/bin/python3");
    println!("cargo:rustc-env=UNITCORN_BUILD_PYTHON={python}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
