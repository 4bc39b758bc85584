//! Text from outside (a certificate name a client sends, a reason that
//! quotes one) made safe for the agent's log: [`Escaped`] writes every
//! control character (newline, carriage return, escape, ...) as a Rust
//! escape (`\n`, `\u{1b}`), so no client can start a log line of its own
//! ("served operator=alice") or move the terminal's cursor. Printable
//! text, non-ASCII included, is written as it is.

use std::fmt;

/// Displays its text with control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let forged = "x`\nserved operator=alice\r\u{1b}[2K é";
        assert_eq!(
            Escaped(forged).to_string(),
            "x`\\nserved operator=alice\\r\\u{1b}[2K é"
        );
        assert!(!Escaped(forged).to_string().contains('\n'));
    }
}
