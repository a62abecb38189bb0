//! Bounded line reading for the line-based formats (AQDEF, tables): a line is at most
//! [`MAX_LINE`] bytes, so a file without line breaks is refused at that length instead of
//! growing a buffer with the file.

use std::io::BufRead;

/// Longest line read, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// The lines of one input, numbered from 1.
pub struct Lines<R> {
    input: R,
    bytes: Vec<u8>,
    number: usize,
}

/// What [`Lines::read_line`] found.
#[derive(Debug, PartialEq)]
pub enum Next<'a> {
    /// Line `number`, without its line end (`\n`, `\r\n`) and, the first line, without a UTF-8
    /// byte order mark.
    Line(usize, &'a [u8]),
    /// Line `number` is longer than [`MAX_LINE`]: the reader stops there.
    TooLong(usize),
    /// No more lines.
    End,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `input`.
    pub fn new(input: R) -> Lines<R> {
        Lines {
            input,
            bytes: Vec::new(),
            number: 0,
        }
    }

    /// The next line.
    pub fn read_line(&mut self) -> std::io::Result<Next<'_>> {
        self.bytes.clear();
        let n = std::io::Read::take(&mut self.input, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.bytes)?;
        if n == 0 {
            return Ok(Next::End);
        }
        self.number += 1;
        if self.bytes.len() > MAX_LINE {
            return Ok(Next::TooLong(self.number));
        }
        let mut line = self.bytes.as_slice();
        if self.number == 1 {
            line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
        }
        while let [rest @ .., b'\r' | b'\n'] = line {
            line = rest;
        }
        Ok(Next::Line(self.number, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<String> {
        let mut lines = Lines::new(input);
        let mut out = Vec::new();
        loop {
            match lines.read_line().expect("read") {
                Next::Line(n, b) => out.push(format!("{n}:{}", String::from_utf8_lossy(b))),
                Next::TooLong(n) => {
                    out.push(format!("{n}: too long"));
                    return out;
                }
                Next::End => return out,
            }
        }
    }

    #[test]
    fn line_ends_and_the_first_lines_bom_are_not_part_of_a_line() {
        assert_eq!(
            all(b"\xef\xbb\xbfa;b\r\n\xef\xbb\xbfc\n\nd"),
            ["1:a;b", "2:\u{feff}c", "3:", "4:d"]
        );
    }

    #[test]
    fn a_line_longer_than_the_bound_stops_the_reader_at_its_number() {
        let mut text = b"first\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        text.extend(b"\nnever read\n");
        assert_eq!(all(&text), ["1:first", "2: too long"]);
        let exact = [vec![b'y'; MAX_LINE - 1], b"\n".to_vec()].concat();
        assert_eq!(all(&exact).len(), 1, "a line of the bound itself is read");
    }
}
