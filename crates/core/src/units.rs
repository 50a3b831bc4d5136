//! Number formatting that several rooms print the same way (a simulated vLLM log line, a log summary), kept in
//! one place so they cannot drift apart.

/// Python's `f"{n:,}"`, e.g. `262,144`.
pub fn with_thousands_separators(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
