//! The manifest, `dblaunch.toml`: finding and reading it (`load`), into
//! serde structs shaped like the TOML (`raw`), checked into the validated
//! model (`model`, `validate`), every error with its line and column
//! (`error`); the dev-loop keys `ready`, `watch` and `needs` in
//! `devloop`; the shapes a value takes in several places (`shapes`); cycles
//! of `after`, `needs` and groups (`cycles`). `dotenv` reads the `.env`
//! beside it; `suggest` finds the name a typo was meant to be.

mod cycles;
mod devloop;
pub mod dotenv;
mod error;
mod load;
mod model;
mod raw;
mod shapes;
mod suggest;
mod validate;

pub use devloop::split_host_port;
pub use error::{Diagnostic, ManifestError};
pub use load::{load, locate, parse};
pub use model::{
    Check, Command, DEFAULT_MAX_RESTARTS, DbRef, Hold, Manifest, Program, Ready, Restart, Settings,
    Watch, is_path,
};
pub use suggest::closest;
pub use validate::same_database;
