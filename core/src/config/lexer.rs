//! Lexer of the config language: text to tokens with line and column.
//!
//! Owns: what a word, a quoted string, a comment and the punctuation `; { }` are.
//! Must not: know any directive or give meaning to a word (that is `parser` and
//! `directives`).
//!
//! Rules:
//! - whitespace (spaces, tabs, newlines) separates tokens and is otherwise free;
//! - `#` at the start of a token starts a comment that runs to the end of the line
//!   (inside a word, as in `key#1`, it is part of the word);
//! - `;`, `{` and `}` are tokens of their own and end any word before them;
//! - a word is a run of other characters; parts of it may be in double quotes, which
//!   may hold spaces, `;`, `{`, `}` and `#` (`"/mnt/my disk"`, `cluster_key="a b"`).
//!   In quotes, `\"` is a quote and `\\` a backslash; any other backslash is kept.
//!   A quoted part must end on the line it starts on.

use super::error::{ConfigError, Pos};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Semi,
    LBrace,
    RBrace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// The word with its quotes removed (for punctuation, the character itself).
    pub text: String,
    /// Where the token starts.
    pub pos: Pos,
    /// Just after the token's last character.
    pub end: Pos,
    /// Whether any part of the word was quoted.
    pub quoted: bool,
}

impl Token {
    /// The position of the `chars`-th character of the word's text. Exact for an
    /// unquoted word; for a quoted one, the start of the word.
    pub fn pos_at(&self, chars: usize) -> Pos {
        if self.quoted {
            self.pos
        } else {
            self.pos.offset(chars)
        }
    }

    /// How the token reads in a message: `` `word` `` or `` `;` ``.
    pub fn shown(&self) -> String {
        if self.quoted {
            format!("`{:?}`", self.text)
        } else {
            format!("`{}`", self.text)
        }
    }
}

/// All tokens of `text`, and the position of the end of the file.
#[derive(Clone, Debug)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    pub eof: Pos,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos = Pos {
                line: self.pos.line.saturating_add(1),
                column: 1,
            };
        } else {
            self.pos = self.pos.offset(1);
        }
        Some(c)
    }
}

fn is_punct(c: char) -> bool {
    matches!(c, ';' | '{' | '}')
}

fn check_control(c: char, pos: Pos) -> Result<(), ConfigError> {
    if c.is_control() && !c.is_whitespace() {
        return Err(ConfigError::at(
            pos,
            format!(
                "unexpected control character U+{:04X}: a config is plain text",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

pub fn lex(text: &str) -> Result<Lexed, ConfigError> {
    // A UTF-8 byte order mark (some Windows editors write one) is not part of the
    // config: without this, it was reported as an invisible unexpected character.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cur = Cursor {
        chars: text.chars().peekable(),
        pos: Pos::START,
    };
    let mut tokens = Vec::new();
    while let Some(c) = cur.peek() {
        let start = cur.pos;
        if c.is_whitespace() {
            cur.bump();
        } else if c == '#' {
            while let Some(c) = cur.peek() {
                if c == '\n' {
                    break;
                }
                cur.bump();
            }
        } else if is_punct(c) {
            cur.bump();
            let kind = match c {
                ';' => TokenKind::Semi,
                '{' => TokenKind::LBrace,
                _ => TokenKind::RBrace,
            };
            tokens.push(Token {
                kind,
                text: c.to_string(),
                pos: start,
                end: cur.pos,
                quoted: false,
            });
        } else {
            tokens.push(word(&mut cur)?);
        }
    }
    Ok(Lexed {
        tokens,
        eof: cur.pos,
    })
}

fn word(cur: &mut Cursor<'_>) -> Result<Token, ConfigError> {
    let start = cur.pos;
    let mut text = String::new();
    let mut quoted = false;
    while let Some(c) = cur.peek() {
        if c.is_whitespace() || is_punct(c) {
            break;
        }
        check_control(c, cur.pos)?;
        if c == '"' {
            quoted = true;
            quoted_part(cur, &mut text)?;
        } else {
            cur.bump();
            text.push(c);
        }
    }
    Ok(Token {
        kind: TokenKind::Word,
        text,
        pos: start,
        end: cur.pos,
        quoted,
    })
}

/// Reads `"..."` (the cursor is on the opening quote) into `text`.
fn quoted_part(cur: &mut Cursor<'_>, text: &mut String) -> Result<(), ConfigError> {
    let open = cur.pos;
    cur.bump();
    loop {
        let here = cur.pos;
        match cur.bump() {
            Some('"') => return Ok(()),
            Some('\\') => match cur.peek() {
                Some(e @ ('"' | '\\')) => {
                    cur.bump();
                    text.push(e);
                }
                _ => text.push('\\'),
            },
            Some('\n') | None => {
                return Err(ConfigError::at(
                    open,
                    "unterminated string: expected a closing `\"` on the same line",
                ))
            }
            Some(c) => {
                check_control(c, here)?;
                text.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, u32, u32)> {
        match lex(text) {
            Ok(l) => l
                .tokens
                .into_iter()
                .map(|t| (t.text, t.pos.line, t.pos.column))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn config_lexer_splits_words_punctuation_and_comments() {
        let w = words("http 8888; # comment ; {\nstream a{input x;}#c\n");
        let expect = [
            ("http", 1, 1),
            ("8888", 1, 6),
            (";", 1, 10),
            ("stream", 2, 1),
            ("a", 2, 8),
            ("{", 2, 9),
            ("input", 2, 10),
            ("x", 2, 16),
            (";", 2, 17),
            ("}", 2, 18),
        ];
        let expect: Vec<_> = expect
            .iter()
            .map(|(t, l, c)| (t.to_string(), *l, *c))
            .collect();
        assert_eq!(w, expect);
    }

    #[test]
    fn config_lexer_quotes_and_hash_inside_words() {
        let w = words(r#"dvr "/mnt/my disk;{}#" key#1 k="a \"b\" \\ \x";"#);
        let texts: Vec<_> = w.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["dvr", "/mnt/my disk;{}#", "key#1", r#"k=a "b" \ \x"#, ";"]
        );
    }

    #[test]
    fn config_lexer_refuses_unterminated_strings() {
        let e = lex("a;\n  dvr \"/x;\n").err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((2, 7)));
    }

    #[test]
    fn config_lexer_counts_columns_in_characters() {
        let l = lex("é\tx").ok().map(|l| l.tokens);
        let cols: Vec<_> = l.unwrap_or_default().iter().map(|t| t.pos.column).collect();
        assert_eq!(cols, [1, 3]);
    }
}
