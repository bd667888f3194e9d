//! Untrusted text from monitored hosts (remote stderr, the host's own name,
//! OS and kernel strings, error messages built from them) made safe to print,
//! log, mail and store: [`sanitize`] removes terminal escape sequences and
//! every other control character, so a host cannot recolour, retitle, rewrite
//! or beep an operator's terminal, forge log lines with a CR or a newline, or
//! reorder text with bidirectional overrides.
//!
//! It is applied once, where host text enters edgemon (the constructor of a
//! collection error and the transport-independent opening of a report), not
//! at every print. Text edgemon writes itself (mails, tables) may use
//! newlines freely; host text never brings its own.

use std::borrow::Cow;

/// `text` on one line without control characters: ANSI/VT escape sequences (CSI, OSC,
/// two-byte escapes) are dropped whole; tabs, CR and LF become one space each; any other C0
/// or C1 control, DEL, and the Unicode bidirectional controls become U+FFFD, so an operator
/// can see something was there. Text without any of these is returned as is.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // A two-byte escape (ESC 7, ESC c, ...): both go.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' | '\n' | '\r' => out.push(' '),
            c if unsafe_char(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// True for characters [`sanitize`] does not pass through.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Skips a control sequence's parameters and intermediates up to its final byte (0x40..0x7E).
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// Skips an OSC/DCS/SOS/PM/APC string up to its terminator (BEL, ST or ESC \).
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                break;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "disk full: /var — 100 % (ümlaut, 中文)";
        assert!(matches!(sanitize(text), std::borrow::Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn escape_sequences_go_whole() {
        assert_eq!(sanitize("\x1b[31;1mRED\x1b[0m ok"), "RED ok");
        assert_eq!(sanitize("a\x1b]0;owned title\x07b"), "ab");
        assert_eq!(
            sanitize("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b"),
            "alinkb"
        );
        assert_eq!(sanitize("a\x1bcb"), "ab");
        assert_eq!(sanitize("a\u{9b}2Jb"), "ab");
        // An escape cut short at the end of the text swallows nothing else.
        assert_eq!(sanitize("tail\x1b["), "tail");
        assert_eq!(sanitize("tail\x1b"), "tail");
    }

    #[test]
    fn line_breaks_and_other_controls_cannot_forge_lines_or_beep() {
        assert_eq!(
            sanitize("ok\r\nlevel=ERROR forged"),
            "ok  level=ERROR forged"
        );
        assert_eq!(sanitize("tab\there"), "tab here");
        assert_eq!(
            sanitize("bell\x07 nul\0 del\x7f"),
            "bell\u{fffd} nul\u{fffd} del\u{fffd}"
        );
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\u{fffd}fed");
        let out = sanitize("\x1b[2J\x08\x0c\u{85}x");
        assert!(!out.chars().any(char::is_control), "{out:?}");
    }
}
