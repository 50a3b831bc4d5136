//! Server-sent-events framing over arbitrary network chunks: lines may split anywhere, events may share a chunk,
//! and one line may be megabytes long. Only `data` matters to OpenAI streams; `event: error` is kept too.

use memchr::memchr;

/// The longest event accepted before the stream is declared malformed.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct EventTooLarge;

/// One complete event.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub data: &'a [u8],
    /// The `event:` field when present (e.g. `error`).
    pub name: Option<&'a [u8]>,
}

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline, so long lines are scanned once.
    scanned: usize,
    data: Vec<u8>,
    name: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; calls `on_event` for each event completed by them.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>),
    ) -> Result<(), EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(rel) = memchr(b'\n', &self.buf[start + self.scanned..]) {
            let end = start + self.scanned + rel;
            self.scanned = 0;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if self.has_data {
                    let name = (!self.name.is_empty()).then_some(self.name.as_slice());
                    on_event(SseEvent {
                        data: &self.data,
                        name,
                    });
                }
                self.data.clear();
                self.name.clear();
                self.has_data = false;
            } else if line[0] != b':' {
                let (field, value) = match memchr(b':', line) {
                    Some(i) => (
                        &line[..i],
                        line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]),
                    ),
                    None => (line, &b""[..]),
                };
                match field {
                    b"data" => {
                        if self.has_data {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                        self.has_data = true;
                    }
                    b"event" => {
                        self.name.clear();
                        self.name.extend_from_slice(value);
                    }
                    _ => {}
                }
                if self.data.len() > MAX_EVENT_BYTES {
                    return Err(EventTooLarge);
                }
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// Bytes received that do not yet form a complete event.
    pub fn pending(&self) -> bool {
        self.has_data || !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, Option<String>)> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push((
                    String::from_utf8_lossy(e.data).into_owned(),
                    e.name.map(|n| String::from_utf8_lossy(n).into_owned()),
                ))
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn handles_comments_crlf_multiline_and_names() {
        let got = events(&[
            b": keep-alive\r\n\r\ndata: a\r\ndata: b\r\n\r\nevent: error\ndata:{\"x\":1}\n\n",
        ]);
        assert_eq!(
            got,
            vec![
                ("a\nb".into(), None),
                ("{\"x\":1}".into(), Some("error".into()))
            ]
        );
    }

    #[test]
    fn real_vllm_capture_parses_to_its_events() {
        let raw = include_bytes!("../../../fixtures/sse/vllm_cpu_stream_chat.txt");
        let got = events(&[raw]);
        assert_eq!(got.last().unwrap().0, "[DONE]");
        assert_eq!(got.len(), raw.windows(6).filter(|w| w == b"data: ").count());
    }

    #[test]
    fn a_megabyte_line_split_in_small_pieces_is_one_event() {
        let line = format!("data: {}\n\n", "x".repeat(1 << 20));
        let pieces: Vec<&[u8]> = line.as_bytes().chunks(1000).collect();
        let got = events(&pieces);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), 1 << 20);
    }

    #[test]
    fn refuses_unbounded_lines() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut result = Ok(());
        for _ in 0..20 {
            result = p.feed(&chunk, |_| {});
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(EventTooLarge));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let raw: &[u8] = b"data: {\"a\":1}\n\n: c\n\ndata: two\ndata: lines\r\n\r\nevent: e\ndata: x\n\ndata: [DONE]\n\n";
            let whole = events(&[raw]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % raw.len()).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts { pieces.push(&raw[at..c.max(at)]); at = c.max(at); }
            pieces.push(&raw[at..]);
            prop_assert_eq!(events(&pieces), whole);
        }
    }
}
