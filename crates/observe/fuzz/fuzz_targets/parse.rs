//! Feeds arbitrary bytes (as lossy UTF-8, since scraped bodies are decoded that way) to the exposition parser:
//! it must never panic, and every error must name a line that exists.
#![no_main]

use infer_doctor_observe::exposition::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scrape = parse(&text);
    let lines = text.split('\n').count();
    assert!(
        scrape
            .errors
            .iter()
            .all(|error| (1..=lines).contains(&error.line))
    );
});
