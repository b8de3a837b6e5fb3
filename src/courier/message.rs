//! The message body (Courier's `D…` file), read only when a module asks for it, and rewritten
//! byte-preservingly (DECISIONS §8): untouched headers and body bytes are kept exactly, line
//! endings follow the file's own; the new content is complete in a temporary file before the
//! spool file is touched; the spool file keeps its inode (copy back, then fsync).

use std::io;
use std::path::{Path, PathBuf};

/// One header field as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The name as written (before the colon).
    pub name: &'a str,
    /// The raw value: everything after the colon up to and including the final line ending,
    /// folding kept.
    pub raw_value: &'a [u8],
}

impl HeaderField<'_> {
    /// The value with leading blanks after the colon and the final CR/LF removed, folding kept
    /// (what the reference's modules compare).
    pub fn value(&self) -> String {
        todo!("courier/message.rs")
    }
}

pub struct Message {
    path: PathBuf,
}

impl Message {
    /// Nothing is read until a module asks.
    pub fn new(path: &Path) -> Message {
        Message {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file (read once, bounded).
    pub fn bytes(&self) -> io::Result<&[u8]> {
        todo!("courier/message.rs")
    }

    /// The header fields in order. Header names are matched case-insensitively by callers.
    pub fn headers(&self) -> io::Result<Vec<HeaderField<'_>>> {
        todo!("courier/message.rs")
    }

    /// Values (see [`HeaderField::value`]) of every header with this name, case-insensitive.
    pub fn header_values(&self, name: &str) -> io::Result<Vec<String>> {
        let _ = name;
        todo!("courier/message.rs")
    }

    /// The MIME structure, parsed once (mail-parser) on first use.
    pub fn parsed(&self) -> io::Result<&mail_parser::Message<'_>> {
        todo!("courier/message.rs")
    }

    /// Remove every header with this name (case-insensitive) and write the file back.
    /// Returns how many were removed; nothing is written when none was present.
    pub fn remove_headers(&mut self, name: &str) -> io::Result<usize> {
        let _ = name;
        todo!("courier/message.rs")
    }

    /// Replace the file's content with `new` (temp file complete first, inode kept, fsync),
    /// and make later reads see it.
    pub fn replace(&mut self, new: Vec<u8>) -> io::Result<()> {
        let _ = new;
        todo!("courier/message.rs")
    }
}
