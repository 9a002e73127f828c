//! The manifest, `dblaunch.toml`: finding and reading it (`load`), into
//! serde structs shaped like the TOML (`raw`), checked into the validated
//! model (`model`, `validate`), every error with its line and column
//! (`error`). `dotenv` reads the `.env` beside it; `suggest` finds the
//! name a typo was meant to be.

pub mod dotenv;
mod error;
mod load;
mod model;
mod raw;
mod suggest;
mod validate;

pub use error::{Diagnostic, ManifestError};
pub use load::{load, locate, parse};
pub use model::{
    Command, DEFAULT_MAX_RESTARTS, DbRef, Hold, Manifest, Program, Restart, Settings, is_path,
};
pub use suggest::closest;
pub use validate::same_database;
