//! A name quoted for a message, as `{:?}` quotes a string but without the Unicode tables
//! `{:?}` brings into the module (about 9 KB): what could change how a log line or an error
//! message reads (control characters, line and paragraph separators, invisible and
//! bidirectional formatting characters) is escaped, every other character is written as
//! it is. ASCII is quoted exactly as `{:?}` quotes it.

use std::fmt::{self, Write};

/// `self.0` in double quotes, escaped for a message.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        let mut from = 0;
        for (at, c) in self.0.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\0' => "\\0",
                c if hidden(c) => "",
                _ => continue,
            };
            f.write_str(&self.0[from..at])?;
            if escape.is_empty() {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_str(escape)?;
            }
            from = at + c.len_utf8();
        }
        f.write_str(&self.0[from..])?;
        f.write_char('"')
    }
}

/// Characters that change how the text around them reads, or cannot be seen.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::Quoted;

    #[test]
    fn ascii_and_printable_text_are_quoted_as_debug_quotes_them() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for text in [
            "",
            "gpt-4o",
            "a \"quoted\" \\ name",
            "tab\there\nnew line\r\0",
            every_ascii.as_str(),
            "café 日本語 🚀",
        ] {
            assert_eq!(Quoted(text).to_string(), format!("{text:?}"), "{text}");
        }
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_escaped() {
        assert_eq!(
            Quoted("a\u{202e}b\u{2028}c\u{200b}d\u{85}e\u{feff}").to_string(),
            "\"a\\u{202e}b\\u{2028}c\\u{200b}d\\u{85}e\\u{feff}\""
        );
    }
}
