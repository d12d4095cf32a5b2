//! Text handling between the sampler and the caller: whole UTF-8 characters out of token bytes,
//! and stop strings held back until they can no longer match. Pure code, no llama.cpp.

/// Turns a stream of token bytes into whole UTF-8 characters.
///
/// A character split across tokens is held until its last byte arrives; bytes that can never form a
/// valid character become U+FFFD; an incomplete character at the very end is dropped by
/// [`Utf8Assembler::finish`].
#[derive(Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Adds `bytes` and appends every character that is now complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY: from_utf8 just said these bytes are valid UTF-8.
                    out.push_str(unsafe {
                        std::str::from_utf8_unchecked(&self.pending[start..start + valid])
                    });
                    start += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += n;
                        }
                        None => break, // an incomplete character at the end: keep it
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Bytes held for an incomplete character (at most 3).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Ends the stream: an incomplete final character is dropped.
    pub fn finish(&mut self) {
        self.pending.clear();
    }
}

/// Holds back text that could be the beginning of a stop string.
///
/// Text goes in with [`StopMatcher::push`]; what comes out is safe to deliver: it contains no stop
/// string and no suffix that could still grow into one. When a stop string matches, the text
/// before it is returned and the match itself is never delivered.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: Option<usize>,
}

/// What [`StopMatcher::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum StopResult {
    /// Deliver this text (possibly empty) and go on.
    Continue(String),
    /// A stop string matched: deliver this text (the part before the match) and stop.
    Stopped(String),
}

impl StopMatcher {
    /// `stops` must be non-empty strings (the API checks this).
    pub fn new(stops: Vec<String>) -> Self {
        debug_assert!(stops.iter().all(|s| !s.is_empty()));
        StopMatcher {
            stops,
            held: String::new(),
            matched: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    pub fn push(&mut self, text: &str) -> StopResult {
        if self.stops.is_empty() {
            return StopResult::Continue(text.to_owned());
        }
        self.held.push_str(text);
        // The earliest complete match wins.
        if let Some((pos, i)) = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|p| (p, i)))
            .min()
        {
            self.matched = Some(i);
            self.held.truncate(pos);
            return StopResult::Stopped(std::mem::take(&mut self.held));
        }
        // Hold back the longest suffix that is a prefix of some stop string. A stop string is valid
        // UTF-8, so such a suffix always starts on a character boundary.
        let keep = self.longest_partial_match();
        let cut = self.held.len() - keep;
        let rest = self.held.split_off(cut);
        StopResult::Continue(std::mem::replace(&mut self.held, rest))
    }

    /// The index (in the list given to `new`) of the stop string that matched.
    pub fn matched(&self) -> Option<usize> {
        self.matched
    }

    /// Ends the stream without a match: whatever was held back is delivered.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn longest_partial_match(&self) -> usize {
        let held = self.held.as_bytes();
        let mut best = 0;
        for stop in &self.stops {
            let stop = stop.as_bytes();
            // A complete match was ruled out above, so only proper prefixes can be held.
            let max = (stop.len() - 1).min(held.len());
            for len in (best + 1..=max).rev() {
                if held[held.len() - len..] == stop[..len] {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(chunks: &[&[u8]]) -> String {
        let mut a = Utf8Assembler::default();
        let mut out = String::new();
        for c in chunks {
            a.push(c, &mut out);
        }
        a.finish();
        out
    }

    #[test]
    fn utf8_whole_characters_pass_through() {
        assert_eq!(assemble(&[b"hello ", "wörld".as_bytes()]), "hello wörld");
    }

    #[test]
    fn utf8_character_split_across_tokens_is_held() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut a = Utf8Assembler::default();
        let mut out = String::new();
        a.push(&euro[..1], &mut out);
        assert_eq!(out, "");
        assert_eq!(a.pending_len(), 1);
        a.push(&euro[1..2], &mut out);
        assert_eq!(out, "");
        a.push(&[euro[2], b'!'], &mut out);
        assert_eq!(out, "€!");
        assert_eq!(a.pending_len(), 0);
    }

    #[test]
    fn utf8_four_byte_character_in_four_pieces() {
        let s = "🦀".as_bytes();
        assert_eq!(assemble(&[&s[..1], &s[1..2], &s[2..3], &s[3..]]), "🦀");
    }

    #[test]
    fn utf8_invalid_bytes_become_replacement() {
        assert_eq!(assemble(&[b"a\xffb"]), "a\u{FFFD}b");
        // A lead byte followed by a non-continuation byte.
        assert_eq!(assemble(&[b"\xe2", b"x"]), "\u{FFFD}x");
    }

    #[test]
    fn utf8_incomplete_final_character_is_dropped() {
        assert_eq!(assemble(&[b"ok", &"€".as_bytes()[..2]]), "ok");
    }

    fn run_stops(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for c in chunks {
            match m.push(c) {
                StopResult::Continue(t) => out.push_str(&t),
                StopResult::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn stop_string_in_one_piece() {
        assert_eq!(run_stops(&["END"], &["abc END def"]), ("abc ".into(), true));
    }

    #[test]
    fn stop_string_across_pieces_is_never_delivered() {
        let mut m = StopMatcher::new(vec!["\nUser:".into()]);
        assert_eq!(m.push("Hi\n"), StopResult::Continue("Hi".into()));
        assert_eq!(m.push("Us"), StopResult::Continue("".into()));
        assert_eq!(m.push("er:"), StopResult::Stopped("".into()));
    }

    #[test]
    fn held_text_is_released_when_it_cannot_match() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), StopResult::Continue("".into()));
        assert_eq!(m.push("AR"), StopResult::Continue("STAR".into()));
    }

    #[test]
    fn held_text_is_delivered_at_the_end() {
        assert_eq!(run_stops(&["STOP"], &["a", "ST"]), ("aST".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run_stops(&["zz", "b"], &["a b zz"]), ("a ".into(), true));
        // "abcd" starts before "bc" in "xabcd": the earlier match wins.
        assert_eq!(
            run_stops(&["bc", "abcd"], &["xab", "cd"]),
            ("x".into(), true)
        );
    }

    #[test]
    fn overlapping_prefix_is_held_correctly() {
        // "aab" must be found even though "aa" first looks like a partial match of "aab".
        assert_eq!(
            run_stops(&["aab"], &["a", "a", "a", "b"]),
            ("a".into(), true)
        );
    }

    #[test]
    fn multibyte_stop_strings() {
        assert_eq!(
            run_stops(&["ß!"], &["straß", "e ß", "!"]),
            ("straße ".into(), true)
        );
    }

    #[test]
    fn no_stops_passes_everything() {
        assert_eq!(run_stops(&[], &["a", "b"]), ("ab".into(), false));
    }
}
