//! `ConfigError` and source positions.
//!
//! Owns: the error type every config failure ends as (line, column, message) and the
//! `Pos` that tokens carry. Must not: decide what a message says (the lexer, parser and
//! directive checks do) or know any directive.

/// A place in the config text. Lines and columns start at 1; a column counts
/// characters (a tab is one), not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// The position `chars` characters further on the same line.
    pub fn offset(self, chars: usize) -> Pos {
        let add = u32::try_from(chars).unwrap_or(u32::MAX);
        Pos {
            line: self.line,
            column: self.column.saturating_add(add),
        }
    }
}

/// Why a config was refused: where, and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ConfigError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl ConfigError {
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        ConfigError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    /// The offending line of `text` with a caret under the column, for `tern check`:
    ///
    /// ```text
    ///    3 | strem main {
    ///      | ^
    /// ```
    ///
    /// Empty when the line is not in `text` (an error at the end of the file).
    pub fn excerpt(&self, text: &str) -> String {
        let index = usize::try_from(self.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(line) = text.lines().nth(index) else {
            return String::new();
        };
        let col = usize::try_from(self.column.saturating_sub(1)).unwrap_or(0);
        // Keep tabs as tabs under the text so the caret lines up in a terminal.
        let pad: String = line
            .chars()
            .take(col)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let num = self.line.to_string();
        let gutter = " ".repeat(num.len());
        format!("{num} | {line}\n{gutter} | {pad}^")
    }
}
