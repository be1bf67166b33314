//! Tokenizer shared by the label and field selector parsers, following the
//! Kubernetes selector lexer: identifiers run until whitespace or a special symbol,
//! and special symbols are matched longest first.

use super::{SelectorError, SelectorErrorKind};

/// Which selector language is being read: field selectors know a few more
/// operators and keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Label,
    Field,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Identifier,
    In,
    NotIn,
    Contains,
    NotContains,
    /// `!`
    Not,
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl TokenKind {
    /// Whether the token can stand for a value: keywords are plain identifiers in
    /// value position (`x in (in, notin)` is valid in Kubernetes).
    pub(crate) fn is_word(self) -> bool {
        matches!(
            self,
            Self::Identifier | Self::In | Self::NotIn | Self::Contains | Self::NotContains
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind,
    pub(crate) text: &'a str,
    pub(crate) offset: usize,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// A cursor over the tokens of a selector text.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    dialect: Dialect,
    peeked: Option<Token<'a>>,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str, dialect: Dialect) -> Self {
        Self {
            text,
            pos: 0,
            dialect,
            peeked: None,
        }
    }

    pub(crate) fn peek(&mut self) -> Token<'a> {
        match self.peeked {
            Some(token) => token,
            None => {
                let token = self.scan();
                self.peeked = Some(token);
                token
            }
        }
    }

    pub(crate) fn next_token(&mut self) -> Token<'a> {
        match self.peeked.take() {
            Some(token) => token,
            None => self.scan(),
        }
    }

    /// Takes the next token and fails unless it can stand for a value.
    pub(crate) fn expect_word(
        &mut self,
        expected: &'static str,
    ) -> Result<Token<'a>, SelectorError> {
        let token = self.next_token();
        if token.kind.is_word() {
            Ok(token)
        } else {
            Err(unexpected(token, expected))
        }
    }

    fn scan(&mut self) -> Token<'a> {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).copied().is_some_and(is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&first) = bytes.get(start) else {
            return Token {
                kind: TokenKind::End,
                text: "",
                offset: start,
            };
        };
        if is_special(first) {
            let second = bytes.get(start + 1).copied();
            let field = self.dialect == Dialect::Field;
            let (kind, len) = match (first, second) {
                (b'=', Some(b'=')) => (TokenKind::DoubleEquals, 2),
                (b'!', Some(b'=')) => (TokenKind::NotEquals, 2),
                (b'>', Some(b'=')) if field => (TokenKind::GreaterOrEqual, 2),
                (b'<', Some(b'=')) if field => (TokenKind::LessOrEqual, 2),
                (b'=', _) => (TokenKind::Equals, 1),
                (b'!', _) => (TokenKind::Not, 1),
                (b'>', _) => (TokenKind::Greater, 1),
                (b'<', _) => (TokenKind::Less, 1),
                (b'(', _) => (TokenKind::OpenParen, 1),
                (b')', _) => (TokenKind::CloseParen, 1),
                _ => (TokenKind::Comma, 1),
            };
            self.pos = start + len;
            return Token {
                kind,
                text: self.text.get(start..self.pos).unwrap_or_default(),
                offset: start,
            };
        }
        while bytes
            .get(self.pos)
            .copied()
            .is_some_and(|b| !is_whitespace(b) && !is_special(b))
        {
            self.pos += 1;
        }
        // Identifiers end at an ASCII byte or the end of text, so this is a char boundary.
        let text = self.text.get(start..self.pos).unwrap_or_default();
        let kind = match (text, self.dialect) {
            ("in", _) => TokenKind::In,
            ("notin", _) => TokenKind::NotIn,
            ("contains", Dialect::Field) => TokenKind::Contains,
            ("notcontains", Dialect::Field) => TokenKind::NotContains,
            _ => TokenKind::Identifier,
        };
        Token {
            kind,
            text,
            offset: start,
        }
    }
}

/// The error for a token the grammar does not allow here.
pub(crate) fn unexpected(token: Token<'_>, expected: &'static str) -> SelectorError {
    let kind = if token.kind == TokenKind::End {
        SelectorErrorKind::UnexpectedEnd { expected }
    } else {
        SelectorErrorKind::UnexpectedToken {
            found: token.text.to_owned(),
            expected,
        }
    };
    SelectorError::at(token.offset, kind)
}

/// Reads the values of a field selector's `in` / `notin` after the operator:
/// `(a, b, c)`. Every empty entry is the empty value (`(a,)` is `a` and `""`),
/// and `()` is an empty list, which the caller refuses. Label selectors read
/// their lists with Kubernetes' own rules instead (`label::parse_values`).
pub(crate) fn parse_value_list<'a>(lexer: &mut Lexer<'a>) -> Result<Vec<Token<'a>>, SelectorError> {
    let open = lexer.next_token();
    if open.kind != TokenKind::OpenParen {
        return Err(unexpected(open, "'('"));
    }
    let mut values = Vec::new();
    // Whether the last thing read was a value, so a ',' or ')' now ends an entry
    // that has text; otherwise the entry is empty.
    let mut after_value = false;
    loop {
        let token = lexer.next_token();
        match token.kind {
            kind if kind.is_word() && !after_value => {
                values.push(token);
                after_value = true;
            }
            TokenKind::Comma => {
                if !after_value {
                    values.push(empty_at(token.offset));
                }
                after_value = false;
            }
            TokenKind::CloseParen => {
                if !after_value && !values.is_empty() {
                    values.push(empty_at(token.offset));
                }
                return Ok(values);
            }
            _ if after_value => return Err(unexpected(token, "',' or ')'")),
            _ => return Err(unexpected(token, "a value, ',' or ')'")),
        }
    }
}

/// The empty value, standing at `offset` (where its entry would be).
pub(crate) fn empty_at(offset: usize) -> Token<'static> {
    Token {
        kind: TokenKind::Identifier,
        text: "",
        offset,
    }
}

/// Reads the single value after `=`, `!=`, `>` and friends. Like Kubernetes, a
/// missing value (`key=` followed by `,` or the end) is the empty value.
pub(crate) fn parse_single_value<'a>(lexer: &mut Lexer<'a>) -> Result<Token<'a>, SelectorError> {
    let token = lexer.peek();
    if matches!(token.kind, TokenKind::Comma | TokenKind::End) {
        return Ok(empty_at(token.offset));
    }
    lexer.expect_word("a value")
}

/// Joins a field selector's value set with commas for canonical printing. A set
/// holding only the empty value prints as `,` because a field selector refuses
/// `()` as an empty list.
pub(super) fn join_set<T: std::fmt::Display>(values: &std::collections::BTreeSet<T>) -> String {
    let joined = values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if joined.is_empty() {
        ",".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, dialect: Dialect) -> Vec<(TokenKind, &str, usize)> {
        let mut lexer = Lexer::new(text, dialect);
        let mut out = Vec::new();
        loop {
            let t = lexer.next_token();
            out.push((t.kind, t.text, t.offset));
            if t.kind == TokenKind::End {
                return out;
            }
        }
    }

    #[test]
    fn scans_longest_symbols_with_offsets() {
        use TokenKind::*;
        assert_eq!(
            kinds(" a!==b ,\tin(", Dialect::Label),
            vec![
                (Identifier, "a", 1),
                (NotEquals, "!=", 2),
                (Equals, "=", 4),
                (Identifier, "b", 5),
                (Comma, ",", 7),
                (In, "in", 9),
                (OpenParen, "(", 11),
                (End, "", 12),
            ]
        );
        assert_eq!(
            kinds("a>=1", Dialect::Label),
            vec![
                (Identifier, "a", 0),
                (Greater, ">", 1),
                (Equals, "=", 2),
                (Identifier, "1", 3),
                (End, "", 4)
            ]
        );
        assert_eq!(kinds("a>=1", Dialect::Field)[1], (GreaterOrEqual, ">=", 1));
        assert_eq!(kinds("contains", Dialect::Label)[0].0, Identifier);
        assert_eq!(kinds("contains", Dialect::Field)[0].0, Contains);
    }

    #[test]
    fn value_lists_follow_kubernetes() {
        let list = |text: &str| -> Result<Vec<String>, SelectorError> {
            let mut lexer = Lexer::new(text, Dialect::Label);
            parse_value_list(&mut lexer).map(|v| v.iter().map(|t| t.text.to_owned()).collect())
        };
        assert_eq!(list("(a, b)").ok(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(list("(a,)").ok(), Some(vec!["a".into(), "".into()]));
        assert_eq!(list("(,a)").ok(), Some(vec!["".into(), "a".into()]));
        assert_eq!(list("(,)").ok(), Some(vec!["".into(), "".into()]));
        assert_eq!(list("()").ok(), Some(vec![]));
        assert_eq!(
            list("(in, notin)").ok(),
            Some(vec!["in".into(), "notin".into()])
        );
        assert!(list("(a b)").is_err());
        assert!(list("(a").is_err());
        assert!(list("a)").is_err());
        assert!(list("(=)").is_err());
    }
}
