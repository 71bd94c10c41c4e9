//! Writing to standard output for people and scripts. A closed pipe (the
//! output piped into `head`) is not an error: the work is done, and the
//! exit code still tells how it went.

use std::io::Write;

/// Writes `text` to stdout and flushes it; a broken pipe is ignored, like
/// the best command-line tools do, instead of panicking as `print!` would.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes one line to stderr; a closed or broken stderr is ignored instead
/// of panicking as `eprintln!` would (the exit code still tells how it went).
pub fn eprint_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(text.as_bytes())
        .and_then(|_| err.write_all(b"\n"))
        .and_then(|_| err.flush());
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
