//! What one config file gives, whichever reader read it (TOML in `file.rs`, Python in
//! `python_file.rs`): its settings' values, where each was set, and its extras. The two readers share this type
//! and nothing else, so that neither depends on the other.

use super::extras::Extras;
use super::origin::Origin;
use super::table::Setting;
use super::value::Value;

/// What a config file sets, in the order it binds the names, each with its line.
#[derive(Debug)]
pub(crate) struct Read {
    pub values: Vec<(&'static Setting, Value, Origin)>,
    pub extras: Extras,
}
