//! A ticket's name in a queue directory, `00000000000000000042.w`: its place
//! in the queue and its mode; and the name of the nested queue that
//! programs under a holder's ticket share, `00000000000000000042.w.nested`.

use std::path::{Path, PathBuf};

use crate::mode::Mode;

/// A ticket's name: its place in the queue and its mode, `00000000000000000042.w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketId {
    /// Its place: numbers only grow, so a name that is gone is finished.
    pub number: u64,
    /// Read or write.
    pub mode: Mode,
}

impl TicketId {
    /// The file name, `00000000000000000042.w`.
    pub fn file_name(&self) -> String {
        format!("{:020}.{}", self.number, self.mode.letter())
    }

    /// The ticket a file name stands for; `None` for anything else.
    pub fn parse(name: &str) -> Option<TicketId> {
        let (number, mode) = name.split_once('.')?;
        if number.len() != 20 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(TicketId {
            number: number.parse().ok()?,
            mode: Mode::from_letter(mode)?,
        })
    }
}

/// Where the programs under a ticket queue among themselves.
pub fn nested_dir_of(ticket: &Path) -> PathBuf {
    let mut name = ticket.file_name().unwrap_or_default().to_os_string();
    name.push(NESTED_SUFFIX);
    ticket.with_file_name(name)
}

pub const NESTED_SUFFIX: &str = ".nested";
