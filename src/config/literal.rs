//! The safe Python-literal parser (DECISIONS §1): strings (raw, triple-quoted, escapes,
//! implicit concatenation), ints, floats, True/False/None, lists, tuples, dicts, sets,
//! `+ - * / // %`, parentheses and unary minus, `#` comments. Nothing is ever evaluated.
//!
//! The value is tokenised in full first, then folded by a recursive-descent parser that
//! computes constants as it goes (there are no names, so there is nothing else to do).
//! Semantics follow Python 3 where the subset overlaps: true division gives a float, `//` and
//! `%` floor, `True` counts as 1 in arithmetic, duplicate dict keys keep the first key's place
//! and the last value. Ints are 64-bit (overflow is an error, not a bigint); non-finite float
//! results are errors; nesting depth and the size of `*` repetition results are bounded so a
//! hostile value cannot exhaust the stack or memory.

use std::fmt;

/// A parsed config value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Set(Vec<Value>),
    /// Key order as written.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// Python's name for the type, for error messages (`str`, `int`, `list`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
        }
    }

    /// Python's `repr()` of the value, e.g. `'abc'`, `[1, 2]`, `(1,)`, `{'a': None}`.
    pub fn repr(&self) -> String {
        self.to_string()
    }
}

/// Displays as Python's `repr()`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Str(s) => f.write_str(&str_repr(s)),
            Value::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            Value::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Value::Set(items) if items.is_empty() => f.write_str("set()"),
            Value::Set(items) => {
                f.write_str("{")?;
                seq(f, items)?;
                f.write_str("}")
            }
            Value::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn float_repr(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        }
    } else {
        // Rust's Debug is the shortest round-trip form with the same switch to exponent
        // notation as Python; only the exponent is written differently (`1e16` vs `1e+16`).
        let text = format!("{x:?}");
        match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        }
    }
}

fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Why a value was rejected, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralError {
    /// What is wrong, e.g. `unexpected 'os'`.
    pub message: String,
    /// Line (1-based, within the value) and column (1-based, in characters), where known.
    pub position: Option<(usize, usize)>,
    /// An explanation appended after the position, e.g. `only literals are allowed`.
    pub detail: Option<String>,
}

impl LiteralError {
    fn at(pos: Pos, message: impl Into<String>) -> LiteralError {
        LiteralError {
            message: message.into(),
            position: Some((pos.line, pos.col)),
            detail: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> LiteralError {
        self.detail = Some(detail.into());
        self
    }

    /// The full text with the position rendered by the caller's rule (the INI layer turns
    /// value-relative positions into file columns): `MESSAGE at WHERE: DETAIL`.
    pub fn render(&self, where_: Option<&str>) -> String {
        let mut out = self.message.clone();
        if let Some(w) = where_ {
            out.push_str(" at ");
            out.push_str(w);
        }
        if let Some(d) = &self.detail {
            out.push_str(": ");
            out.push_str(d);
        }
        out
    }
}

impl fmt::Display for LiteralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let where_ = match self.position {
            Some((1, col)) => Some(format!("column {col}")),
            Some((line, col)) => Some(format!("line {line}, column {col}")),
            None => None,
        };
        f.write_str(&self.render(where_.as_deref()))
    }
}

impl std::error::Error for LiteralError {}

/// Parse one config value. The error text says what is wrong and where in the value
/// (the caller adds file, line and key).
pub fn parse_literal(src: &str) -> Result<Value, String> {
    parse_literal_detailed(src).map_err(|e| e.to_string())
}

/// [`parse_literal`] with the error's position kept apart, so a caller that knows where the
/// value sits in a file can report file columns.
pub fn parse_literal_detailed(src: &str) -> Result<Value, LiteralError> {
    let tokens = Lexer::new(src).run()?;
    Parser {
        tokens,
        pos: 0,
        depth: 0,
    }
    .parse_value()
}

/// Deepest bracket/unary nesting accepted; far beyond any real config, well within the stack.
const MAX_DEPTH: usize = 100;
/// Largest result of a `*` repetition, in elements plus string bytes.
const MAX_WEIGHT: usize = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    /// Wider than i64 so that `-9223372036854775808` can be written.
    Int(i128),
    Float(f64),
    Name(String),
    Op(&'static str),
    /// A line break outside brackets: it ends the expression, as in Python.
    Newline,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: Pos,
}

/// Operators and punctuation, longest first so that `//` wins over `/`. Only some are
/// valid here; the rest are recognised so errors can name them.
const OPS: &[&str] = &[
    "...", "**", "//", "==", "!=", "<=", ">=", "->", ":=", "<<", ">>", "(", ")", "[", "]", "{",
    "}", ",", ":", "+", "-", "*", "/", "%", ".", "=", "<", ">", ";", "@", "&", "|", "^", "~", "!",
];

struct Lexer {
    chars: Vec<char>,
    i: usize,
    pos: Pos,
    depth: usize,
    tokens: Vec<Token>,
}

impl Lexer {
    fn new(src: &str) -> Lexer {
        // Universal newlines, as Python reads source text.
        let src = src.replace("\r\n", "\n").replace('\r', "\n");
        Lexer {
            chars: src.chars().collect(),
            i: 0,
            pos: Pos { line: 1, col: 1 },
            depth: 0,
            tokens: Vec::new(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    fn push(&mut self, tok: Tok, pos: Pos) {
        self.tokens.push(Token { tok, pos });
    }

    fn run(mut self) -> Result<Vec<Token>, LiteralError> {
        while let Some(c) = self.peek(0) {
            let start = self.pos;
            match c {
                '\n' => {
                    self.bump();
                    let after_token =
                        matches!(self.tokens.last(), Some(t) if t.tok != Tok::Newline);
                    if self.depth == 0 && after_token {
                        self.push(Tok::Newline, start);
                    }
                }
                ' ' | '\t' | '\x0c' => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek(0) {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                '\\' => {
                    // Explicit line joining, as in Python source.
                    if self.peek(1) == Some('\n') {
                        self.bump();
                        self.bump();
                    } else {
                        return Err(LiteralError::at(start, "unexpected '\\'")
                            .detail("a backslash is only allowed inside a string"));
                    }
                }
                '\'' | '"' => {
                    let s = self.string(false)?;
                    self.push(Tok::Str(s), start);
                }
                '0'..='9' => {
                    let tok = self.number()?;
                    self.push(tok, start);
                }
                '.' if matches!(self.peek(1), Some('0'..='9')) => {
                    let tok = self.number()?;
                    self.push(tok, start);
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut name = String::new();
                    while let Some(c) = self.peek(0) {
                        if c.is_alphanumeric() || c == '_' {
                            name.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    if matches!(self.peek(0), Some('\'' | '"')) {
                        let s = self.prefixed_string(&name, start)?;
                        self.push(Tok::Str(s), start);
                    } else {
                        self.push(Tok::Name(name), start);
                    }
                }
                _ => {
                    let Some(op) = OPS.iter().copied().find(|op| self.starts_with(op)) else {
                        return Err(LiteralError::at(
                            start,
                            format!("unexpected character {c:?}"),
                        ));
                    };
                    for _ in 0..op.chars().count() {
                        self.bump();
                    }
                    match op {
                        "(" | "[" | "{" => self.depth += 1,
                        ")" | "]" | "}" => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                    self.push(Tok::Op(op), start);
                }
            }
        }
        let end = self.pos;
        self.push(Tok::End, end);
        Ok(self.tokens)
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(k, c)| self.peek(k) == Some(c))
    }

    /// A string literal after an identifier-like prefix (`r'…'`, `b'…'`, `f'…'`).
    fn prefixed_string(&mut self, prefix: &str, start: Pos) -> Result<String, LiteralError> {
        let lower = prefix.to_ascii_lowercase();
        match lower.as_str() {
            "r" => self.string(true),
            "u" => self.string(false),
            "b" | "br" | "rb" => Err(LiteralError::at(start, "bytes literals are not allowed")
                .detail("write a plain string")),
            "f" | "fr" | "rf" => Err(LiteralError::at(start, "f-strings are not allowed")
                .detail("only literals are allowed")),
            "t" | "tr" | "rt" => Err(LiteralError::at(start, "template strings are not allowed")
                .detail("only literals are allowed")),
            _ => Err(LiteralError::at(start, format!("unexpected '{prefix}'"))
                .detail("only literals are allowed")),
        }
    }

    /// A quoted string starting at the opening quote.
    fn string(&mut self, raw: bool) -> Result<String, LiteralError> {
        let start = self.pos;
        let Some(quote) = self.bump() else {
            return Err(LiteralError::at(start, "unterminated string"));
        };
        let triple = self.peek(0) == Some(quote) && self.peek(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let unterminated = || {
            LiteralError::at(start, "unterminated string").detail(if triple {
                "the closing triple quote is missing"
            } else {
                "a quoted string must end on the line it starts (use \\n or triple quotes)"
            })
        };
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(unterminated());
            };
            if c == quote {
                if !triple {
                    return Ok(out);
                }
                if self.peek(0) == Some(quote) && self.peek(1) == Some(quote) {
                    self.bump();
                    self.bump();
                    return Ok(out);
                }
                out.push(c);
                continue;
            }
            if c == '\n' && !triple {
                return Err(unterminated());
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let esc_pos = Pos {
                line: self.pos.line,
                col: self.pos.col - 1,
            };
            let Some(e) = self.bump() else {
                return Err(unterminated());
            };
            if raw {
                // In a raw string a backslash only stops the next character from closing
                // the string; both stay.
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => out.push(e),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut code = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek(0).and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                code = code * 8 + d;
                                self.bump();
                            }
                            None => break,
                        }
                    }
                    // At most 0o777, always a valid scalar value.
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut code: u32 = 0;
                    for _ in 0..len {
                        match self.peek(0).and_then(|c| c.to_digit(16)) {
                            Some(d) => {
                                code = code * 16 + d;
                                self.bump();
                            }
                            None => {
                                return Err(LiteralError::at(
                                    esc_pos,
                                    format!("truncated \\{e} escape"),
                                )
                                .detail(format!("\\{e} needs exactly {len} hex digits")));
                            }
                        }
                    }
                    match char::from_u32(code) {
                        Some(c) => out.push(c),
                        None => {
                            return Err(LiteralError::at(
                                esc_pos,
                                format!("invalid character code {code:#x} in \\{e} escape"),
                            ));
                        }
                    }
                }
                'N' => {
                    return Err(
                        LiteralError::at(esc_pos, "\\N{...} escapes are not supported")
                            .detail("use \\u or \\U with the code point"),
                    );
                }
                // Python keeps unknown escapes as written (`'\.'` is backslash, dot).
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    /// Python's `digitpart`: digits with single `_` between them.
    fn digits(&mut self, radix: u32, out: &mut String) -> Result<(), LiteralError> {
        while let Some(c) = self.peek(0) {
            if c.is_digit(radix) {
                out.push(c);
                self.bump();
            } else if c == '_' && self.peek(1).is_some_and(|n| n.is_digit(radix)) {
                self.bump();
            } else if c == '_' {
                return Err(LiteralError::at(self.pos, "invalid number")
                    .detail("'_' must stand between two digits"));
            } else {
                break;
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Tok, LiteralError> {
        let start = self.pos;
        let bad_suffix = |lexer: &Lexer| -> Result<(), LiteralError> {
            match lexer.peek(0) {
                Some('j' | 'J') => Err(LiteralError::at(
                    lexer.pos,
                    "complex numbers are not allowed",
                )),
                Some(c) if c.is_alphanumeric() || c == '_' => Err(LiteralError::at(
                    lexer.pos,
                    format!("invalid number: unexpected {c:?}"),
                )),
                _ => Ok(()),
            }
        };
        if self.peek(0) == Some('0') {
            let radix = match self.peek(1) {
                Some('x' | 'X') => Some(16),
                Some('o' | 'O') => Some(8),
                Some('b' | 'B') => Some(2),
                _ => None,
            };
            if let Some(radix) = radix {
                self.bump();
                self.bump();
                if self.peek(0) == Some('_') {
                    // `0x_ff` is valid Python.
                    self.bump();
                }
                let mut digits = String::new();
                self.digits(radix, &mut digits)?;
                if digits.is_empty() {
                    return Err(LiteralError::at(start, "invalid number")
                        .detail("digits must follow the 0x / 0o / 0b prefix"));
                }
                bad_suffix(self)?;
                return i128::from_str_radix(&digits, radix)
                    .map(Tok::Int)
                    .map_err(|_| too_large(start));
            }
        }
        let mut text = String::new();
        let mut is_float = false;
        self.digits(10, &mut text)?;
        if self.peek(0) == Some('.') {
            is_float = true;
            self.bump();
            text.push('.');
            if self.peek(0) == Some('_') {
                return Err(LiteralError::at(self.pos, "invalid number")
                    .detail("'_' must stand between two digits"));
            }
            self.digits(10, &mut text)?;
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = matches!(self.peek(1), Some('+' | '-'));
            let digit_at = if sign { 2 } else { 1 };
            if self.peek(digit_at).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                text.push('e');
                self.bump();
                if sign {
                    text.push(self.bump().unwrap_or('+'));
                }
                self.digits(10, &mut text)?;
            }
        }
        bad_suffix(self)?;
        if is_float {
            let x: f64 = text
                .parse()
                .map_err(|_| LiteralError::at(start, format!("invalid number '{text}'")))?;
            if !x.is_finite() {
                return Err(LiteralError::at(start, "float literal out of range"));
            }
            return Ok(Tok::Float(x));
        }
        if text.len() > 1 && text.starts_with('0') {
            if text.chars().any(|c| c != '0') {
                return Err(
                    LiteralError::at(start, "leading zeros are not allowed in integers")
                        .detail("write 0o... for an octal number"),
                );
            }
            return Ok(Tok::Int(0));
        }
        text.parse::<i128>()
            .map(Tok::Int)
            .map_err(|_| too_large(start))
    }
}

fn too_large(pos: Pos) -> LiteralError {
    LiteralError::at(pos, "integer too large").detail("integers must fit in 64 bits")
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Str(s) => format!("string {}", str_repr(s)),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(x) => format!("number {}", float_repr(*x)),
        Tok::Name(n) => format!("'{n}'"),
        Tok::Op(op) => format!("'{op}'"),
        Tok::Newline => "line break".to_string(),
        Tok::End => "end of value".to_string(),
    }
}

fn closer(open: &str) -> &'static str {
    match open {
        "(" => ")",
        "[" => "]",
        _ => "}",
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`, and `next` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_op(&self, op: &str) -> bool {
        matches!(&self.peek().tok, Tok::Op(o) if *o == op)
    }

    fn unexpected(&self, tok: &Token) -> LiteralError {
        let e = LiteralError::at(tok.pos, format!("unexpected {}", describe(&tok.tok)));
        match &tok.tok {
            Tok::Name(_) => e.detail("only literals are allowed"),
            Tok::Newline => e.detail("a value may only continue on the next line inside brackets"),
            _ => e,
        }
    }

    fn enter(&mut self, pos: Pos) -> Result<(), LiteralError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LiteralError::at(pos, "value nested too deeply")
                .detail(format!("at most {MAX_DEPTH} levels are allowed")));
        }
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Value, LiteralError> {
        if self
            .tokens
            .iter()
            .all(|t| matches!(t.tok, Tok::Newline | Tok::End))
        {
            return Err(LiteralError {
                message: "empty value".to_string(),
                position: None,
                detail: Some("write '' for an empty string, or None".to_string()),
            });
        }
        let first = self.expr()?;
        // `key = 1, 2` is a tuple, as in Python.
        let value = if self.at_op(",") {
            let mut items = vec![first];
            while self.at_op(",") {
                self.next();
                if matches!(self.peek().tok, Tok::Newline | Tok::End) {
                    break;
                }
                items.push(self.expr()?);
            }
            Value::Tuple(items)
        } else {
            first
        };
        while self.peek().tok == Tok::Newline {
            self.next();
        }
        let t = self.peek().clone();
        if t.tok != Tok::End {
            return Err(self.unexpected(&t));
        }
        Ok(value)
    }

    fn expr(&mut self) -> Result<Value, LiteralError> {
        let mut left = self.term()?;
        loop {
            let t = self.peek().clone();
            let op = match t.tok {
                Tok::Op(op @ ("+" | "-")) => op,
                _ => return Ok(left),
            };
            self.next();
            let right = self.term()?;
            left = binary(op, left, right).map_err(|m| LiteralError::at(t.pos, m))?;
        }
    }

    fn term(&mut self) -> Result<Value, LiteralError> {
        let mut left = self.unary()?;
        loop {
            let t = self.peek().clone();
            let op = match t.tok {
                Tok::Op(op @ ("*" | "/" | "//" | "%")) => op,
                _ => return Ok(left),
            };
            self.next();
            let right = self.unary()?;
            left = binary(op, left, right).map_err(|m| LiteralError::at(t.pos, m))?;
        }
    }

    fn unary(&mut self) -> Result<Value, LiteralError> {
        let t = self.peek().clone();
        let op = match t.tok {
            Tok::Op(op @ ("+" | "-")) => op,
            _ => return self.primary(),
        };
        self.next();
        // The one int that only exists negated.
        if op == "-"
            && let Tok::Int(v) = self.peek().tok
            && v == -(i64::MIN as i128)
        {
            self.next();
            return Ok(Value::Int(i64::MIN));
        }
        self.enter(t.pos)?;
        let operand = self.unary()?;
        self.depth -= 1;
        unary(op, operand).map_err(|m| LiteralError::at(t.pos, m))
    }

    fn primary(&mut self) -> Result<Value, LiteralError> {
        let t = self.next();
        match t.tok {
            Tok::Str(mut s) => {
                // Adjacent string literals concatenate.
                while let Tok::Str(more) = &self.peek().tok {
                    s.push_str(more);
                    self.next();
                }
                Ok(Value::Str(s))
            }
            Tok::Int(v) => i64::try_from(v)
                .map(Value::Int)
                .map_err(|_| too_large(t.pos)),
            Tok::Float(x) => Ok(Value::Float(x)),
            Tok::Name(ref n) => match n.as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                "None" => Ok(Value::None),
                _ => Err(self.unexpected(&t)),
            },
            Tok::Op(open @ ("(" | "[" | "{")) => {
                self.enter(t.pos)?;
                let v = self.bracketed(open, t.pos)?;
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(self.unexpected(&t)),
        }
    }

    /// After the opening bracket: consume `,` or the closing bracket. Returns true at the end.
    fn separator(&mut self, open: &str, open_pos: Pos) -> Result<bool, LiteralError> {
        let close = closer(open);
        let t = self.next();
        match t.tok {
            Tok::Op(",") if self.peek().tok == Tok::End => Err(LiteralError::at(
                open_pos,
                format!("'{open}' is never closed"),
            )
            .detail(format!("expected '{close}'"))),
            Tok::Op(",") => Ok(false),
            Tok::Op(c) if c == close => Ok(true),
            Tok::End => Err(
                LiteralError::at(open_pos, format!("'{open}' is never closed"))
                    .detail(format!("expected '{close}'")),
            ),
            _ => {
                let e = LiteralError::at(
                    t.pos,
                    format!("expected ',' or '{close}' but found {}", describe(&t.tok)),
                );
                Err(if matches!(t.tok, Tok::Name(_)) {
                    e.detail("only literals are allowed")
                } else {
                    e
                })
            }
        }
    }

    fn bracketed(&mut self, open: &'static str, open_pos: Pos) -> Result<Value, LiteralError> {
        let close = closer(open);
        if self.at_op(close) {
            self.next();
            return Ok(match open {
                "(" => Value::Tuple(Vec::new()),
                "[" => Value::List(Vec::new()),
                _ => Value::Dict(Vec::new()),
            });
        }
        if self.peek().tok == Tok::End {
            return Err(
                LiteralError::at(open_pos, format!("'{open}' is never closed"))
                    .detail(format!("expected '{close}'")),
            );
        }
        let first_pos = self.peek().pos;
        let first = self.expr()?;
        match open {
            "(" => {
                if self.at_op(")") {
                    self.next();
                    return Ok(first);
                }
                Ok(Value::Tuple(self.items(open, open_pos, first)?))
            }
            "[" => Ok(Value::List(self.items(open, open_pos, first)?)),
            _ if self.at_op(":") => self.dict(open_pos, first, first_pos),
            _ => {
                let mut set: Vec<Value> = Vec::new();
                let mut item = first;
                let mut item_pos = first_pos;
                loop {
                    check_hashable(&item).map_err(|m| LiteralError::at(item_pos, m))?;
                    if !set.iter().any(|v| key_eq(v, &item)) {
                        set.push(item);
                    }
                    if self.separator(open, open_pos)? {
                        return Ok(Value::Set(set));
                    }
                    if self.at_op("}") {
                        self.next();
                        return Ok(Value::Set(set));
                    }
                    item_pos = self.peek().pos;
                    item = self.expr()?;
                }
            }
        }
    }

    /// The rest of a list or tuple whose first element is parsed.
    fn items(
        &mut self,
        open: &'static str,
        open_pos: Pos,
        first: Value,
    ) -> Result<Vec<Value>, LiteralError> {
        let close = closer(open);
        let mut items = vec![first];
        loop {
            if self.separator(open, open_pos)? {
                return Ok(items);
            }
            if self.at_op(close) {
                self.next();
                return Ok(items);
            }
            items.push(self.expr()?);
        }
    }

    fn dict(&mut self, open_pos: Pos, first: Value, first_pos: Pos) -> Result<Value, LiteralError> {
        let mut pairs: Vec<(Value, Value)> = Vec::new();
        let mut key = first;
        let mut key_pos = first_pos;
        loop {
            check_hashable(&key).map_err(|m| LiteralError::at(key_pos, m))?;
            let t = self.next();
            if t.tok != Tok::Op(":") {
                return Err(LiteralError::at(
                    t.pos,
                    format!("expected ':' but found {}", describe(&t.tok)),
                ));
            }
            let value = self.expr()?;
            // Python keeps the first key's place and the last value.
            match pairs.iter_mut().find(|(k, _)| key_eq(k, &key)) {
                Some(pair) => pair.1 = value,
                None => pairs.push((key, value)),
            }
            if self.separator("{", open_pos)? {
                return Ok(Value::Dict(pairs));
            }
            if self.at_op("}") {
                self.next();
                return Ok(Value::Dict(pairs));
            }
            key_pos = self.peek().pos;
            key = self.expr()?;
        }
    }
}

fn check_hashable(v: &Value) -> Result<(), String> {
    match v {
        Value::List(_) | Value::Dict(_) | Value::Set(_) => {
            Err(format!("unhashable type: '{}'", v.type_name()))
        }
        Value::Tuple(items) => items.iter().try_for_each(check_hashable),
        _ => Ok(()),
    }
}

/// Python's `==` for hashable values (1 == 1.0 == True).
fn key_eq(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(Num::I(x)), Some(Num::I(y))) => x == y,
        (Some(x), Some(y)) => x.as_f64() == y.as_f64(),
        _ => match (a, b) {
            (Value::None, Value::None) => true,
            (Value::Str(x), Value::Str(y)) => x == y,
            (Value::Tuple(x), Value::Tuple(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| key_eq(p, q))
            }
            _ => false,
        },
    }
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(x) => x,
        }
    }
}

/// The value as a number; `bool` counts as an int, as in Python.
fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::I(i64::from(*b))),
        Value::Int(i) => Some(Num::I(*i)),
        Value::Float(x) => Some(Num::F(*x)),
        _ => None,
    }
}

fn int_like(v: &Value) -> Option<i64> {
    match num(v) {
        Some(Num::I(i)) => Some(i),
        _ => None,
    }
}

const OVERFLOW: &str = "integer overflow: the result does not fit in 64 bits";

fn finite(x: f64) -> Result<Value, String> {
    if x.is_finite() {
        Ok(Value::Float(x))
    } else {
        Err("float overflow: the result is not a finite number".to_string())
    }
}

fn unary(op: &str, v: Value) -> Result<Value, String> {
    match (op, num(&v)) {
        ("-", Some(Num::I(i))) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| OVERFLOW.to_string()),
        ("-", Some(Num::F(x))) => Ok(Value::Float(-x)),
        ("+", Some(Num::I(i))) => Ok(Value::Int(i)),
        ("+", Some(Num::F(x))) => Ok(Value::Float(x)),
        _ => Err(format!(
            "bad operand type for unary {op}: '{}'",
            v.type_name()
        )),
    }
}

fn binary(op: &str, a: Value, b: Value) -> Result<Value, String> {
    let unsupported = |a: &Value, b: &Value| {
        format!(
            "unsupported operand types for {op}: '{}' and '{}'",
            a.type_name(),
            b.type_name()
        )
    };
    if let (Some(x), Some(y)) = (num(&a), num(&b)) {
        return arith(op, x, y);
    }
    match (op, a, b) {
        ("+", Value::Str(mut x), Value::Str(y)) => {
            x.push_str(&y);
            Ok(Value::Str(x))
        }
        ("+", Value::List(mut x), Value::List(y)) => {
            x.extend(y);
            Ok(Value::List(x))
        }
        ("+", Value::Tuple(mut x), Value::Tuple(y)) => {
            x.extend(y);
            Ok(Value::Tuple(x))
        }
        ("*", seq, n) if int_like(&n).is_some() && is_sequence(&seq) => {
            repeat(seq, int_like(&n).unwrap_or(0))
        }
        ("*", n, seq) if int_like(&n).is_some() && is_sequence(&seq) => {
            repeat(seq, int_like(&n).unwrap_or(0))
        }
        ("%", Value::Str(_), _) => Err("string formatting with '%' is not supported".to_string()),
        (_, a, b) => Err(unsupported(&a, &b)),
    }
}

fn is_sequence(v: &Value) -> bool {
    matches!(v, Value::Str(_) | Value::List(_) | Value::Tuple(_))
}

/// Rough memory footprint: elements plus string bytes.
fn weight(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len() + 1,
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            items.iter().map(weight).fold(1, usize::saturating_add)
        }
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| weight(k).saturating_add(weight(v)))
            .fold(1, usize::saturating_add),
        _ => 1,
    }
}

fn repeat(seq: Value, n: i64) -> Result<Value, String> {
    let n = usize::try_from(n).unwrap_or(0);
    if weight(&seq).saturating_mul(n) > MAX_WEIGHT {
        return Err(format!(
            "repetition result too large (limit {MAX_WEIGHT} elements/bytes)"
        ));
    }
    Ok(match seq {
        Value::Str(s) => Value::Str(s.repeat(n)),
        Value::List(items) => Value::List(repeat_items(&items, n)),
        Value::Tuple(items) => Value::Tuple(repeat_items(&items, n)),
        other => other,
    })
}

fn repeat_items(items: &[Value], n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len() * n);
    for _ in 0..n {
        out.extend_from_slice(items);
    }
    out
}

fn arith(op: &str, a: Num, b: Num) -> Result<Value, String> {
    const ZERO: &str = "division by zero";
    if let (Num::I(x), Num::I(y)) = (a, b) {
        return match op {
            "+" => x
                .checked_add(y)
                .map(Value::Int)
                .ok_or_else(|| OVERFLOW.to_string()),
            "-" => x
                .checked_sub(y)
                .map(Value::Int)
                .ok_or_else(|| OVERFLOW.to_string()),
            "*" => x
                .checked_mul(y)
                .map(Value::Int)
                .ok_or_else(|| OVERFLOW.to_string()),
            "/" if y == 0 => Err(ZERO.to_string()),
            "/" => finite(x as f64 / y as f64),
            "//" | "%" if y == 0 => Err(ZERO.to_string()),
            "//" => {
                let q = x.checked_div(y).ok_or_else(|| OVERFLOW.to_string())?;
                let floor = if x % y != 0 && ((x < 0) != (y < 0)) {
                    q - 1
                } else {
                    q
                };
                Ok(Value::Int(floor))
            }
            "%" => {
                // i64::MIN % -1 overflows in Rust; the answer is 0.
                let r = if y == -1 { 0 } else { x % y };
                Ok(Value::Int(if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }))
            }
            _ => Err(format!("unsupported operator {op}")),
        };
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    match op {
        "+" => finite(x + y),
        "-" => finite(x - y),
        "*" => finite(x * y),
        "/" | "//" | "%" if y == 0.0 => Err(ZERO.to_string()),
        "/" => finite(x / y),
        "//" => finite(float_divmod(x, y).0),
        "%" => finite(float_divmod(x, y).1),
        _ => Err(format!("unsupported operator {op}")),
    }
}

/// Python's float floor division and modulo (the result of `%` takes the divisor's sign).
fn float_divmod(x: f64, y: f64) -> (f64, f64) {
    let mut m = x % y;
    let mut div = (x - m) / y;
    if m != 0.0 {
        if (y < 0.0) != (m < 0.0) {
            m += y;
            div -= 1.0;
        }
    } else {
        m = 0.0_f64.copysign(y);
    }
    let floordiv = if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 { f + 1.0 } else { f }
    } else {
        0.0_f64.copysign(x / y)
    };
    (floordiv, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Value {
        match parse_literal(src) {
            Ok(v) => v,
            Err(e) => panic!("{src:?} failed: {e}"),
        }
    }

    fn err(src: &str) -> String {
        match parse_literal(src) {
            Ok(v) => panic!("{src:?} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(p("'dbm'"), s("dbm"));
        assert_eq!(p("\"dbm\""), s("dbm"));
        assert_eq!(p("''"), s(""));
        assert_eq!(p(r#"'it\'s'"#), s("it's"));
        assert_eq!(p(r#""say \"hi\"""#), s("say \"hi\""));
        assert_eq!(p(r"'a\\b'"), s("a\\b"));
        assert_eq!(p(r"'\n\t\r\0'"), s("\n\t\r\0"));
        assert_eq!(p(r"'\a\b\f\v'"), s("\x07\x08\x0c\x0b"));
        assert_eq!(p(r"'\x41\u00e9\U0001F600'"), s("Aé😀"));
        assert_eq!(p(r"'\101\7\0101'"), s("A\x07\x081"));
        assert_eq!(p(r"'\.\d'"), s("\\.\\d"));
        assert_eq!(p("'a\\\nb'"), s("ab"));
        assert_eq!(p("u'x'"), s("x"));
    }

    #[test]
    fn raw_strings() {
        let v = p(r"r'^.*\.(scr|exe|com|bat|pif|lnk|sys|mid|vb|js|ws|shs|ceo|cmd|cpl|hta|vbs)$'");
        assert_eq!(
            v,
            s(r"^.*\.(scr|exe|com|bat|pif|lnk|sys|mid|vb|js|ws|shs|ceo|cmd|cpl|hta|vbs)$")
        );
        assert_eq!(p(r"R'\n'"), s("\\n"));
        assert_eq!(p(r"r'a\'b'"), s("a\\'b"));
        assert_eq!(p(r#"r"\\""#), s("\\\\"));
    }

    #[test]
    fn triple_quoted_and_concatenation() {
        assert_eq!(p("'''a\nb'c'''"), s("a\nb'c"));
        assert_eq!(p("\"\"\"x\"\"y\"\"\""), s("x\"\"y"));
        assert_eq!(p("r'''\\d\n'''"), s("\\d\n"));
        assert_eq!(p("'a' \"b\" r'\\c'"), s("ab\\c"));
        assert_eq!(p("('a'\n 'b')"), s("ab"));
        assert_eq!(p("'a' 'b' * 2"), s("abab"));
    }

    #[test]
    fn string_errors() {
        assert!(err("'abc").contains("unterminated string at column 1"));
        assert!(err("'ab\ncd'").contains("unterminated string"));
        assert!(err("'''abc''").contains("unterminated string"));
        assert!(err(r"'\x4'").contains("truncated \\x escape"));
        assert!(err(r"'\ud800'").contains("invalid character code"));
        assert!(err(r"'\N{DASH}'").contains("not supported"));
        assert!(err("b'x'").contains("bytes literals are not allowed"));
        assert!(err("f'{x}'").contains("f-strings are not allowed"));
        assert!(err("rb'x'").contains("bytes"));
    }

    #[test]
    fn integers() {
        assert_eq!(p("14"), Value::Int(14));
        assert_eq!(p("0"), Value::Int(0));
        assert_eq!(p("000"), Value::Int(0));
        assert_eq!(p("512_000"), Value::Int(512000));
        assert_eq!(p("0x1F"), Value::Int(31));
        assert_eq!(p("0X_ff"), Value::Int(255));
        assert_eq!(p("0o17"), Value::Int(15));
        assert_eq!(p("0b1010_1010"), Value::Int(170));
        assert_eq!(p("-5"), Value::Int(-5));
        assert_eq!(p("+5"), Value::Int(5));
        assert_eq!(p("--5"), Value::Int(5));
        assert_eq!(p("9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(p("-9223372036854775808"), Value::Int(i64::MIN));
        assert!(err("9223372036854775808").contains("integer too large"));
        assert!(err("99999999999999999999999999999999999999999999").contains("too large"));
        assert!(err("012").contains("leading zeros"));
        assert!(err("1__0").contains("'_' must stand between two digits"));
        assert!(err("10_").contains("'_'"));
        assert!(err("0x").contains("digits must follow"));
        assert!(err("0b12").contains("invalid number"));
        assert!(err("1abc").contains("invalid number"));
        assert!(err("1j").contains("complex"));
    }

    #[test]
    fn floats() {
        assert_eq!(p("1.5"), Value::Float(1.5));
        assert_eq!(p("1e3"), Value::Float(1000.0));
        assert_eq!(p("1E-3"), Value::Float(0.001));
        assert_eq!(p(".5"), Value::Float(0.5));
        assert_eq!(p("5."), Value::Float(5.0));
        assert_eq!(p("1.e2"), Value::Float(100.0));
        assert_eq!(p("1_000.000_1"), Value::Float(1000.0001));
        assert_eq!(p("-5.0"), Value::Float(-5.0));
        assert_eq!(p("010.5"), Value::Float(10.5));
        assert!(err("1e999").contains("out of range"));
        assert!(err("1._5").contains("invalid number"));
    }

    #[test]
    fn constants() {
        assert_eq!(p("True"), Value::Bool(true));
        assert_eq!(p("False"), Value::Bool(false));
        assert_eq!(p("None"), Value::None);
        assert!(err("true").contains("unexpected 'true' at column 1: only literals are allowed"));
    }

    #[test]
    fn containers() {
        assert_eq!(p("[]"), Value::List(vec![]));
        assert_eq!(p("()"), Value::Tuple(vec![]));
        assert_eq!(p("{}"), Value::Dict(vec![]));
        assert_eq!(
            p("(1,2,3)"),
            Value::Tuple(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
        );
        assert_eq!(
            p("[1,2,3]"),
            Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
        );
        assert_eq!(p("(1)"), Value::Int(1));
        assert_eq!(p("(1,)"), Value::Tuple(vec![Value::Int(1)]));
        assert_eq!(p("[1,]"), Value::List(vec![Value::Int(1)]));
        assert_eq!(p("1, 2"), Value::Tuple(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(p("1,"), Value::Tuple(vec![Value::Int(1)]));
        assert_eq!(
            p("['list.dnswl.org']"),
            Value::List(vec![s("list.dnswl.org")])
        );
        assert_eq!(
            p("{'': '/etc/courier/signatures/default'}"),
            Value::Dict(vec![(s(""), s("/etc/courier/signatures/default"))])
        );
        assert_eq!(p("{'a': 1,}"), Value::Dict(vec![(s("a"), Value::Int(1))]));
        assert_eq!(p("{'a', 'b', 'a',}"), Value::Set(vec![s("a"), s("b")]));
        assert_eq!(p("{1}"), Value::Set(vec![Value::Int(1)]));
        assert_eq!(
            p("{(1, 'x'): [None, {'k': ()}]}"),
            Value::Dict(vec![(
                Value::Tuple(vec![Value::Int(1), s("x")]),
                Value::List(vec![
                    Value::None,
                    Value::Dict(vec![(s("k"), Value::Tuple(vec![]))])
                ])
            )])
        );
        assert_eq!(
            p("[\n1,\n\n 2\n]"),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
    }

    #[test]
    fn duplicate_dict_keys_last_wins_first_place() {
        assert_eq!(
            p("{'a': 1, 'b': 2, 'a': 3}"),
            Value::Dict(vec![(s("a"), Value::Int(3)), (s("b"), Value::Int(2))])
        );
        // 1, 1.0 and True are the same key in Python.
        assert_eq!(
            p("{1: 'x', 1.0: 'y', True: 'z'}"),
            Value::Dict(vec![(Value::Int(1), s("z"))])
        );
    }

    #[test]
    fn container_errors() {
        assert!(err("[1, 2").contains("'[' is never closed"));
        assert!(err("[1, 2,").contains("'[' is never closed at column 1"));
        assert!(err("{1: 2,").contains("'{' is never closed"));
        assert!(err("{1, 2,").contains("'{' is never closed"));
        assert!(err("{'a': 1").contains("'{' is never closed"));
        assert!(err("[1 2]").contains("expected ',' or ']' but found number 2 at column 4"));
        assert!(err("{'a' 1}").contains("expected ','"));
        assert!(err("{'a': 1, 'b'}").contains("expected ':'"));
        assert!(err("{[1]: 2}").contains("unhashable type: 'list'"));
        assert!(err("{{1}}").contains("unhashable type: 'set'"));
        assert!(err("{([],): 1}").contains("unhashable type: 'list'"));
        assert!(err("[1, 2]]").contains("unexpected ']' at column 7"));
        assert!(err("(1, 2").contains("never closed"));
        assert!(err("[,]").contains("unexpected ','"));
    }

    #[test]
    fn arithmetic() {
        assert_eq!(p("60 * 60 * 24 * 30"), Value::Int(2592000));
        assert_eq!(p("60 * 60 * 12"), Value::Int(43200));
        assert_eq!(p("60 * 60 * 24 * 7"), Value::Int(604800));
        assert_eq!(p("60 * 60 * 2"), Value::Int(7200));
        assert_eq!(p("60 * 60 * 24 * 36"), Value::Int(3110400));
        assert_eq!(p("60 * 60 * 24"), Value::Int(86400));
        assert_eq!(p("1 + 2 * 3"), Value::Int(7));
        assert_eq!(p("(1 + 2) * 3"), Value::Int(9));
        assert_eq!(p("10 - 2 - 3"), Value::Int(5));
        assert_eq!(p("-2 * 3"), Value::Int(-6));
        assert_eq!(p("- (2 + 3)"), Value::Int(-5));
        assert_eq!(p("7 / 2"), Value::Float(3.5));
        assert_eq!(p("6 / 2"), Value::Float(3.0));
        assert_eq!(p("7 // 2"), Value::Int(3));
        assert_eq!(p("-7 // 2"), Value::Int(-4));
        assert_eq!(p("7 // -2"), Value::Int(-4));
        assert_eq!(p("7 % 3"), Value::Int(1));
        assert_eq!(p("-7 % 3"), Value::Int(2));
        assert_eq!(p("7 % -3"), Value::Int(-2));
        assert_eq!(p("-9223372036854775808 % -1"), Value::Int(0));
        assert_eq!(p("7.5 // 2"), Value::Float(3.0));
        assert_eq!(p("-7.5 // 2"), Value::Float(-4.0));
        assert_eq!(p("-7.5 % 2"), Value::Float(0.5));
        assert_eq!(p("7.5 % -2"), Value::Float(-0.5));
        assert_eq!(p("1 + 0.5"), Value::Float(1.5));
        assert_eq!(p("2 * 2.5"), Value::Float(5.0));
        assert_eq!(p("True + 1"), Value::Int(2));
        assert_eq!(p("'ab' + 'cd'"), s("abcd"));
        assert_eq!(p("'ab' * 2"), s("abab"));
        assert_eq!(p("3 * 'x'"), s("xxx"));
        assert_eq!(p("'x' * -1"), s(""));
        assert_eq!(
            p("[1] + [2]"),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(p("[0] * 3"), Value::List(vec![Value::Int(0); 3]));
        assert_eq!(
            p("(1,) + (2,)"),
            Value::Tuple(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(p("1 +\\\n 2"), Value::Int(3));
    }

    #[test]
    fn arithmetic_errors() {
        assert!(err("1 / 0").contains("division by zero at column 3"));
        assert!(err("1 // 0").contains("division by zero"));
        assert!(err("1 % 0").contains("division by zero"));
        assert!(err("1.0 / 0.0").contains("division by zero"));
        assert!(err("9223372036854775807 + 1").contains("integer overflow"));
        assert!(err("-9223372036854775808 // -1").contains("integer overflow"));
        assert!(err("-(-9223372036854775808)").contains("integer overflow"));
        assert!(err("3037000500 * 3037000500").contains("integer overflow"));
        assert!(err("1e300 * 1e300").contains("float overflow"));
        assert!(err("'a' + 1").contains("unsupported operand types for +: 'str' and 'int'"));
        assert!(err("'a' - 'b'").contains("unsupported operand types for -"));
        assert!(err("[1] * [2]").contains("unsupported"));
        assert!(err("-'a'").contains("bad operand type for unary -: 'str'"));
        assert!(err("'%s' % 1").contains("string formatting"));
        assert!(err("'x' * 100000000").contains("too large"));
        assert!(err("[[0] * 1000] * 10000").contains("too large"));
        assert!(err("2 ** 3").contains("unexpected '**'"));
        assert!(err("1 +").contains("unexpected end of value"));
    }

    #[test]
    fn comments_and_line_breaks() {
        assert_eq!(p("14 # two weeks"), Value::Int(14));
        assert_eq!(p("'a#b' # c"), s("a#b"));
        assert_eq!(
            p("[1, # one\n 2] # two"),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(
            p("\n[1,\n2]\n\n"),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(p("1\r\n"), Value::Int(1));
        let e = err("60 *\n 60");
        assert!(e.contains("unexpected line break at column 5"), "{e}");
        assert!(err("1\n2").contains("unexpected number 2 at line 2, column 1"));
    }

    #[test]
    fn rejects_code() {
        let e = err("__import__('os').system('x')");
        assert_eq!(
            e,
            "unexpected '__import__' at column 1: only literals are allowed"
        );
        assert_eq!(
            err("1 os"),
            "unexpected 'os' at column 3: only literals are allowed"
        );
        assert!(err("lambda: 1").contains("unexpected 'lambda'"));
        assert!(err("[x for x in 'ab']").contains("unexpected 'x'"));
        assert!(err("[1 for x in 'ab']").contains("found 'for'"));
        assert!(err("'a'.upper()").contains("unexpected '.'"));
        assert!(err("open").contains("only literals are allowed"));
        assert!(err("len([1])").contains("unexpected 'len'"));
        assert!(err("1 if True else 2").contains("unexpected 'if'"));
        assert!(err("1 == 1").contains("unexpected '=='"));
        assert!(err("[*'ab']").contains("unexpected '*'"));
        assert!(err("x = 1").contains("unexpected 'x'"));
        assert!(err("1 $").contains("unexpected character '$'"));
        assert!(err("...").contains("unexpected '...'"));
        assert!(err("\\x").contains("unexpected '\\'"));
    }

    #[test]
    fn empty_values() {
        for src in ["", "   ", "\n\n", "# just a comment", " \n # c\n"] {
            assert!(err(src).starts_with("empty value"), "{src:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        assert!(err(&deep).contains("nested too deeply"));
        let neg = "-".repeat(5000) + "1";
        assert!(err(&neg).contains("nested too deeply"));
        let ok = "[".repeat(50) + &"]".repeat(50);
        assert!(parse_literal(&ok).is_ok());
    }

    #[test]
    fn privateaddr_example_spanning_lines() {
        let src = "{ 'help@ee.washington.edu': ['[^@]*@.*washington.edu'],\n\
                   'staff@ee.washington.edu': ['[^@]*@.*washington.edu',\n\
                   'someone@example.com'],\n\
                   }";
        assert_eq!(
            p(src),
            Value::Dict(vec![
                (
                    s("help@ee.washington.edu"),
                    Value::List(vec![s("[^@]*@.*washington.edu")])
                ),
                (
                    s("staff@ee.washington.edu"),
                    Value::List(vec![s("[^@]*@.*washington.edu"), s("someone@example.com")])
                ),
            ])
        );
    }

    #[test]
    fn repr_is_pythonic() {
        let v = p("{'a': [1, 2.5, None, True], 'b': (1,), 'c': (), \"it's\": {'x'}}");
        assert_eq!(
            v.repr(),
            "{'a': [1, 2.5, None, True], 'b': (1,), 'c': (), \"it's\": {'x'}}"
        );
        assert_eq!(Value::Set(vec![]).repr(), "set()");
        assert_eq!(s("a\nb\\").repr(), "'a\\nb\\\\'");
    }

    #[test]
    fn detailed_error_positions() {
        let e = parse_literal_detailed("[1,\n  2 x]").unwrap_err();
        assert_eq!(e.position, Some((2, 5)));
        assert_eq!(e.message, "expected ',' or ']' but found 'x'");
        assert_eq!(e.detail.as_deref(), Some("only literals are allowed"));
        assert_eq!(
            e.to_string(),
            "expected ',' or ']' but found 'x' at line 2, column 5: only literals are allowed"
        );
        let empty = parse_literal_detailed("").unwrap_err();
        assert_eq!(empty.position, None);
    }
}
