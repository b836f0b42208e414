//! Parser of the config language: tokens to a tree of directives.
//!
//! Owns: the shape `name args... ;` and `name args... { directives... }`, and the
//! errors of that shape (missing `;`, unbalanced braces, stray punctuation). Must not:
//! know which directives exist, how many arguments they take or what the arguments
//! mean (that is `directives`).

use super::error::{ConfigError, Pos};
use super::lexer::{Lexed, Token, TokenKind};

/// Blocks nest at most this deep (the grammar needs 2); deeper is an error rather
/// than a deep recursion.
const MAX_DEPTH: usize = 8;

/// One directive: `name args...;` or `name args... { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    pub block: Option<Block>,
}

impl Directive {
    /// The last token written as part of the directive before its `;` or `{`.
    pub fn last_token(&self) -> &Token {
        self.args.last().unwrap_or(&self.name)
    }

    /// How the directive's head reads in a message: `` `stream main` ``.
    pub fn head(&self) -> String {
        self.head_upto(self.args.len())
    }

    /// The head with only its first `n` arguments.
    pub fn head_upto(&self, n: usize) -> String {
        let mut s = self.name.text.clone();
        for a in self.args.iter().take(n) {
            s.push(' ');
            if a.quoted || a.text.is_empty() {
                s.push_str(&format!("{:?}", a.text));
            } else {
                s.push_str(&a.text);
            }
        }
        format!("`{s}`")
    }
}

/// `{ directives... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub open: Pos,
    pub items: Vec<Directive>,
    pub close: Pos,
}

/// The directives of a whole file.
pub fn parse_tree(lexed: &Lexed) -> Result<Vec<Directive>, ConfigError> {
    let mut p = Parser {
        tokens: &lexed.tokens,
        next: 0,
        eof: lexed.eof,
    };
    let (items, _) = p.items(None, 0)?;
    Ok(items)
}

struct Parser<'a> {
    tokens: &'a [Token],
    next: usize,
    eof: Pos,
}

/// The directive whose block is being read, for "expected `}`" messages.
struct Opener<'a> {
    head: String,
    brace: &'a Token,
}

impl<'a> Parser<'a> {
    fn bump(&mut self) -> Option<&'a Token> {
        let t = self.tokens.get(self.next)?;
        self.next += 1;
        Some(t)
    }

    /// Reads directives up to the `}` closing `opener` (or the end of the file at the
    /// top level); returns them and the position of that `}`.
    fn items(
        &mut self,
        opener: Option<&Opener<'_>>,
        depth: usize,
    ) -> Result<(Vec<Directive>, Pos), ConfigError> {
        let mut items = Vec::new();
        let mut after_block = false;
        loop {
            let Some(t) = self.bump() else {
                return match opener {
                    None => Ok((items, self.eof)),
                    // Where the `}` should go: after the last token of the file.
                    Some(o) => Err(ConfigError::at(
                        self.tokens.last().map_or(self.eof, |t| t.end),
                        format!(
                            "unexpected end of file: expected `}}` to close the block of {} \
                             opened at line {}, column {}",
                            o.head, o.brace.pos.line, o.brace.pos.column
                        ),
                    )),
                };
            };
            match t.kind {
                TokenKind::RBrace => match opener {
                    Some(_) => return Ok((items, t.pos)),
                    None => {
                        return Err(ConfigError::at(
                            t.pos,
                            "unexpected `}`: no block is open here (one `}` too many?)",
                        ))
                    }
                },
                TokenKind::Semi if after_block => {
                    return Err(ConfigError::at(
                        t.pos,
                        "unexpected `;` after `}`: a block needs no `;` after it",
                    ))
                }
                TokenKind::Semi => {
                    return Err(ConfigError::at(
                        t.pos,
                        "unexpected `;`: expected a directive name",
                    ))
                }
                TokenKind::LBrace => {
                    return Err(ConfigError::at(
                        t.pos,
                        "unexpected `{`: expected a directive name before a block",
                    ))
                }
                TokenKind::Word if t.quoted => {
                    return Err(ConfigError::at(
                        t.pos,
                        format!(
                            "expected a directive name, found the quoted string {}",
                            t.shown()
                        ),
                    ))
                }
                TokenKind::Word => {
                    let d = self.directive(t, depth)?;
                    after_block = d.block.is_some();
                    items.push(d);
                }
            }
        }
    }

    fn directive(&mut self, name: &'a Token, depth: usize) -> Result<Directive, ConfigError> {
        let mut d = Directive {
            name: name.clone(),
            args: Vec::new(),
            block: None,
        };
        loop {
            let Some(t) = self.bump() else {
                let last = d.last_token();
                return Err(ConfigError::at(
                    last.end,
                    format!(
                        "missing `;` after {} to end {}: found the end of the file",
                        last.shown(),
                        d.head()
                    ),
                ));
            };
            match t.kind {
                TokenKind::Word => d.args.push(t.clone()),
                TokenKind::Semi => return Ok(d),
                TokenKind::RBrace => {
                    let last = d.last_token();
                    return Err(ConfigError::at(
                        last.end,
                        format!(
                            "missing `;` after {} to end {}: found `}}` at line {}, column {}",
                            last.shown(),
                            d.head(),
                            t.pos.line,
                            t.pos.column
                        ),
                    ));
                }
                TokenKind::LBrace => {
                    if depth >= MAX_DEPTH {
                        return Err(ConfigError::at(
                            t.pos,
                            format!("blocks nest deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    let opener = Opener {
                        head: d.head(),
                        brace: t,
                    };
                    let (items, close) = self.items(Some(&opener), depth + 1)?;
                    d.block = Some(Block {
                        open: t.pos,
                        items,
                        close,
                    });
                    return Ok(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn tree(text: &str) -> Result<Vec<Directive>, ConfigError> {
        parse_tree(&lex(text)?)
    }

    #[test]
    fn config_parser_builds_the_tree() {
        let t = tree("a 1 2; b x { c; d { e; } }\nf;").unwrap_or_default();
        let names: Vec<_> = t.iter().map(|d| d.name.text.as_str()).collect();
        assert_eq!(names, ["a", "b", "f"]);
        assert_eq!(t[0].args.len(), 2);
        let inner = t[1].block.as_ref().map(|b| b.items.len());
        assert_eq!(inner, Some(2));
    }

    #[test]
    fn config_parser_errors_point_at_the_place() {
        let at = |text: &str| tree(text).err().map(|e| (e.line, e.column));
        assert_eq!(at("a 1\n}"), Some((1, 4)));
        assert_eq!(at("a {\n b;\n"), Some((2, 4)));
        assert_eq!(at("a;\n}"), Some((2, 1)));
        assert_eq!(at("a { } ;"), Some((1, 7)));
        assert_eq!(at(";"), Some((1, 1)));
        assert_eq!(at("a 1"), Some((1, 4)));
        assert_eq!(at(&"a {".repeat(100)), Some((1, 27)));
    }
}
