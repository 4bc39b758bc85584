//! Text that came from a node, made safe to show a person.
//!
//! Everything a node sends (its name, tags, check ids, messages, observed
//! values, error text) is untrusted: a node holding the cluster key, or a
//! check reading a kernel log line someone wrote, can put terminal escape
//! sequences (`ESC ]0;title BEL` sets the window title, `ESC [2J` clears
//! the screen), carriage returns that overwrite what was printed, newlines
//! that forge table rows, or Unicode bidirectional overrides that make
//! text read differently from what it is ("Trojan Source") into it. Every
//! renderer that prints such text to a terminal or a plain-text body goes
//! through [`one_line`] (a table cell, a line of a report); the CSV
//! attachment goes through [`lines`], which keeps line breaks a
//! spreadsheet cell can hold.
//!
//! Nothing is dropped: an unsafe character is written as a visible,
//! ASCII escape (`\x1b`, `\r`, `\u{202e}`), so the reader sees that it
//! was there. JSON output does not use this module: serde escapes control
//! characters itself and a script reading JSON gets the exact text.
//!
//! What counts as unsafe:
//! - C0 controls U+0000–U+001F (ESC, BEL, CR, LF, TAB, ...), DEL U+007F
//!   and the C1 controls U+0080–U+009F (U+009B is a one-character CSI to
//!   some terminals);
//! - bidirectional embeddings, overrides and isolates: U+202A–U+202E and
//!   U+2066–U+2069;
//! - the Unicode line and paragraph separators U+2028 and U+2029.
//!
//! [`lines`] lets LF and TAB through and escapes everything else above.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` as one line that is safe to print: every control character,
/// bidi control and line separator escaped visibly (LF as `\n`, ESC as
/// `\x1b`, U+202E as `\u{202e}`). Returns `text` itself when nothing
/// needed escaping.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Like [`one_line`], but LF and TAB are kept: for a CSV cell or another
/// place that holds several lines (CR is escaped, so a line cannot be
/// overwritten).
pub fn lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// Whether `c` is unsafe to print (see the module doc); LF and TAB count
/// as safe when `keep_lines`.
pub fn is_unsafe(c: char, keep_lines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_lines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

fn escape(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let Some(first) = text.find(|c| is_unsafe(c, keep_lines)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !is_unsafe(c, keep_lines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "fs.file-max = 65536, expected >= 1048576 — ünïcödé ok";
        assert!(matches!(one_line(text), Cow::Borrowed(t) if t == text));
        assert!(matches!(lines("a\nb\tc"), Cow::Borrowed("a\nb\tc")));
    }

    #[test]
    fn escape_sequences_controls_and_bidi_overrides_become_visible_ascii() {
        assert_eq!(one_line("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(one_line("\x1b[2Jgone"), "\\x1b[2Jgone");
        assert_eq!(one_line("a\r\nb\tc\0"), "a\\r\\nb\\tc\\x00");
        assert_eq!(one_line("\u{7f}\u{9b}31m"), "\\x7f\\u{9b}31m");
        assert_eq!(
            one_line("ok\u{202e}exe.txt\u{2066}\u{2069}\u{2028}"),
            "ok\\u{202e}exe.txt\\u{2066}\\u{2069}\\u{2028}"
        );
        assert_eq!(lines("a\r\nb\tc\x1b[0m"), "a\\r\nb\tc\\x1b[0m");
    }

    #[test]
    fn no_escaped_text_holds_an_unsafe_character() {
        // Every code point up to U+3000, one at a time and all together.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        for keep in [false, true] {
            let text = escape(&all, keep);
            assert!(!text.chars().any(|c| is_unsafe(c, keep)), "keep {keep}");
            for c in all.chars() {
                let one = c.to_string();
                let e = escape(&one, keep);
                assert_eq!(e == one, !is_unsafe(c, keep), "{:x}", c as u32);
                assert!(!e.chars().any(|c| is_unsafe(c, keep)));
            }
        }
        assert!(!one_line(&all).contains(['\n', '\t', '\x1b']));
    }
}
