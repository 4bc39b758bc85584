//! Plain-text tables for the terminal: left-aligned columns two spaces
//! apart, the last column unpadded, no trailing spaces.
//!
//! Every cell goes through [`patrol_checks::printable::one_line`] before
//! its width is measured: cells hold node names, tags, check ids and
//! messages that came from nodes, and a cell with an escape sequence,
//! a carriage return or a newline in it must neither reach the terminal
//! nor break the table into forged rows.

use patrol_checks::printable::one_line;

/// `headers` and `rows` as aligned lines (widths in characters).
pub fn render<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.each_ref().map(|c| one_line(c).into_owned()))
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_with_escapes_and_newlines_stays_one_aligned_cell() {
        let rows = [
            ["n1\x1b]0;pwned\x07".to_string(), "ok".to_string()],
            ["n2".to_string(), "line\nforged-row  ok\r".to_string()],
        ];
        let table = render(["NODE", "STATE"], &rows);
        assert_eq!(
            table,
            "NODE                STATE\n\
             n1\\x1b]0;pwned\\x07  ok\n\
             n2                  line\\nforged-row  ok\\r\n"
        );
    }
}
