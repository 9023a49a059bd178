//! A recursive-descent evaluator for arithmetic expressions.
//!
//! Grammar, loosest binding first:
//!
//! ```text
//! expr    = term (("+" | "-") term)*
//! term    = unary (("*" | "/" | "%") unary)*
//! unary   = ("-" | "+") unary | power
//! power   = primary ("^" unary)?              right-associative: 2^3^2 = 2^9
//! primary = number | "(" expr ")" | name | name "(" expr ("," expr)* ")"
//! number  = digits ["." digits] [("e" | "E") ["+" | "-"] digits]   (or "." digits)
//! ```
//!
//! Unary minus binds looser than `^`, as in mathematics: `-2^2` is `-4`. Names are the
//! constants `pi` and `e` and the functions listed in [`call`]. Positions in errors count
//! characters from 0.

use std::fmt;

/// Longest accepted expression, in characters: keeps every call cheap.
pub const MAX_LEN: usize = 10_000;
/// Deepest accepted nesting of parentheses, unary signs, powers and function calls; bounds
/// the recursion so that hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum CalcError {
    /// Nothing but spaces.
    Empty,
    /// Longer than [`MAX_LEN`] characters.
    TooLong(usize),
    /// A character that starts no token.
    UnexpectedChar(char, usize),
    /// A token where it cannot stand.
    Unexpected(String, usize),
    /// The expression stopped where more was needed.
    UnexpectedEnd(&'static str),
    /// A malformed number such as `1.2.3` or `1e`.
    BadNumber(String, usize),
    /// A name that is neither a constant nor a function.
    UnknownName(String, usize),
    /// A function called with the wrong number of arguments.
    Arity { name: String, expected: &'static str, got: usize, at: usize },
    /// Division or remainder by zero.
    DivisionByZero(usize),
    /// A value outside a function's domain, e.g. `sqrt(-1)`.
    Domain(String, usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep(usize),
    /// The result overflowed to infinity or is not a number.
    NotFinite,
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcError::Empty => write!(f, "the expression is empty"),
            CalcError::TooLong(n) => {
                write!(f, "the expression has {n} characters; at most {MAX_LEN} are accepted")
            }
            CalcError::UnexpectedChar(c, at) => write!(f, "unexpected character {c:?} at {at}"),
            CalcError::Unexpected(tok, at) => write!(f, "unexpected '{tok}' at {at}"),
            CalcError::UnexpectedEnd(wanted) => {
                write!(f, "unexpected end of the expression: expected {wanted}")
            }
            CalcError::BadNumber(text, at) => write!(f, "malformed number '{text}' at {at}"),
            CalcError::UnknownName(name, at) => {
                write!(f, "unknown name '{name}' at {at}; known: pi, e, {}", FUNCTIONS.join(", "))
            }
            CalcError::Arity { name, expected, got, at } => {
                write!(f, "{name}() at {at} takes {expected} argument(s), got {got}")
            }
            CalcError::DivisionByZero(at) => write!(f, "division by zero at {at}"),
            CalcError::Domain(msg, at) => write!(f, "{msg} at {at}"),
            CalcError::TooDeep(at) => {
                write!(f, "the expression nests deeper than {MAX_DEPTH} levels at {at}")
            }
            CalcError::NotFinite => write!(f, "the result is too large to represent"),
        }
    }
}

impl std::error::Error for CalcError {}

/// The functions [`call`] knows.
const FUNCTIONS: [&str; 13] =
    ["sqrt", "abs", "min", "max", "round", "floor", "ceil", "ln", "log10", "exp", "sin", "cos", "tan"];

/// Evaluate `input`.
///
/// # Errors
///
/// A [`CalcError`] naming the problem and, where there is one, its position.
pub fn evaluate(input: &str) -> Result<f64, CalcError> {
    let chars = input.chars().count();
    if chars > MAX_LEN {
        return Err(CalcError::TooLong(chars));
    }
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Err(CalcError::Empty);
    }
    let mut parser = Parser { tokens, pos: 0, depth: 0 };
    let value = parser.expr()?;
    if let Some(tok) = parser.peek() {
        return Err(CalcError::Unexpected(tok.kind.to_string(), tok.at));
    }
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CalcError::NotFinite)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Number(f64),
    Name(String),
    Op(char),
    Open,
    Close,
    Comma,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Number(n) => write!(f, "{n}"),
            Kind::Name(s) => write!(f, "{s}"),
            Kind::Op(c) => write!(f, "{c}"),
            Kind::Open => write!(f, "("),
            Kind::Close => write!(f, ")"),
            Kind::Comma => write!(f, ","),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    /// Character offset of the token's first character.
    at: usize,
}

fn tokenize(input: &str) -> Result<Vec<Token>, CalcError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' | '.' => {
                let (value, end) = number(&chars, i)?;
                i = end;
                tokens.push(Token { kind: Kind::Number(value), at });
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                    .map_or(chars.len(), |n| i + n);
                let name: String = chars[i..end].iter().collect();
                i = end;
                tokens.push(Token { kind: Kind::Name(name.to_ascii_lowercase()), at });
                continue;
            }
            '+' | '-' | '*' | '/' | '%' | '^' => Kind::Op(c),
            '×' => Kind::Op('*'),
            '÷' => Kind::Op('/'),
            '(' => Kind::Open,
            ')' => Kind::Close,
            ',' => Kind::Comma,
            other => return Err(CalcError::UnexpectedChar(other, at)),
        };
        tokens.push(Token { kind, at });
        i += 1;
    }
    Ok(tokens)
}

/// Scan the number starting at `start`; returns its value and the offset after it.
fn number(chars: &[char], start: usize) -> Result<(f64, usize), CalcError> {
    let mut end = start;
    let digits = |from: usize| chars[from..].iter().position(|c| !c.is_ascii_digit()).map_or(chars.len(), |n| from + n);
    end = digits(end);
    if chars.get(end) == Some(&'.') {
        end = digits(end + 1);
    }
    if matches!(chars.get(end), Some('e' | 'E')) {
        // Only an exponent if digits follow (optionally signed): `2e` is an error, but
        // the `e` in `2*e` is never reached here.
        let mut exp = end + 1;
        if matches!(chars.get(exp), Some('+' | '-')) {
            exp += 1;
        }
        let exp_end = digits(exp);
        if exp_end == exp {
            let text: String = chars[start..exp.min(chars.len())].iter().collect();
            return Err(CalcError::BadNumber(text, start));
        }
        end = exp_end;
    }
    // A second '.' right after the number (`1.2.3`) is a typo, not two numbers.
    if chars.get(end) == Some(&'.') {
        let stop = digits(end + 1);
        let text: String = chars[start..stop].iter().collect();
        return Err(CalcError::BadNumber(text, start));
    }
    let text: String = chars[start..end].iter().collect();
    match text.parse::<f64>() {
        Ok(v) if text != "." => Ok((v, end)),
        _ => Err(CalcError::BadNumber(text, start)),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let tok = self.tokens.get(self.pos).cloned();
        if tok.is_some() {
            self.pos += 1;
        }
        tok
    }

    /// The operator of the next token, if it is one of `ops`.
    fn peek_op(&self, ops: &[char]) -> Option<(char, usize)> {
        match self.peek() {
            Some(Token { kind: Kind::Op(c), at }) if ops.contains(c) => Some((*c, *at)),
            _ => None,
        }
    }

    /// Enter one level of recursion, refusing past [`MAX_DEPTH`]. Every recursive path
    /// (parentheses, function arguments, signs, the right side of `^`) goes through
    /// [`Parser::unary`], so counting there bounds them all.
    fn descend(&mut self) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.peek().map_or(0, |t| t.at);
            return Err(CalcError::TooDeep(at));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<f64, CalcError> {
        let mut value = self.term()?;
        while let Some((op, _)) = self.peek_op(&['+', '-']) {
            self.pos += 1;
            let rhs = self.term()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, CalcError> {
        let mut value = self.unary()?;
        while let Some((op, at)) = self.peek_op(&['*', '/', '%']) {
            self.pos += 1;
            let rhs = self.unary()?;
            value = match op {
                '*' => value * rhs,
                _ if rhs == 0.0 => return Err(CalcError::DivisionByZero(at)),
                '/' => value / rhs,
                _ => value % rhs,
            };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, CalcError> {
        self.descend()?;
        let value = match self.peek_op(&['+', '-']) {
            Some((op, _)) => {
                self.pos += 1;
                let v = self.unary()?;
                if op == '-' {
                    -v
                } else {
                    v
                }
            }
            None => self.power()?,
        };
        self.depth -= 1;
        Ok(value)
    }

    fn power(&mut self) -> Result<f64, CalcError> {
        let base = self.primary()?;
        if let Some((_, at)) = self.peek_op(&['^']) {
            self.pos += 1;
            // `unary`, not `power`: the right side may carry a sign (`2^-1`), and going
            // through `unary` again makes `^` right-associative.
            let exp = self.unary()?;
            if base == 0.0 && exp < 0.0 {
                return Err(CalcError::DivisionByZero(at));
            }
            let value = base.powf(exp);
            if value.is_nan() {
                return Err(CalcError::Domain(format!("{base}^{exp} is not a real number"), at));
            }
            return Ok(value);
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<f64, CalcError> {
        let Some(tok) = self.next() else {
            return Err(CalcError::UnexpectedEnd("a number, a name or '('"));
        };
        match tok.kind {
            Kind::Number(v) => Ok(v),
            Kind::Open => {
                let value = self.expr()?;
                self.expect_close()?;
                Ok(value)
            }
            Kind::Name(name) => {
                if matches!(self.peek(), Some(Token { kind: Kind::Open, .. })) {
                    self.pos += 1;
                    let args = self.arguments()?;
                    call(&name, &args, tok.at)
                } else {
                    match name.as_str() {
                        "pi" => Ok(std::f64::consts::PI),
                        "e" => Ok(std::f64::consts::E),
                        _ => Err(CalcError::UnknownName(name, tok.at)),
                    }
                }
            }
            other => Err(CalcError::Unexpected(other.to_string(), tok.at)),
        }
    }

    /// The comma-separated arguments after a function's '(' up to and including its ')'.
    fn arguments(&mut self) -> Result<Vec<f64>, CalcError> {
        let mut args = Vec::new();
        if matches!(self.peek(), Some(Token { kind: Kind::Close, .. })) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            match self.next() {
                Some(Token { kind: Kind::Comma, .. }) => continue,
                Some(Token { kind: Kind::Close, .. }) => return Ok(args),
                Some(tok) => return Err(CalcError::Unexpected(tok.kind.to_string(), tok.at)),
                None => return Err(CalcError::UnexpectedEnd("',' or ')'")),
            }
        }
    }

    fn expect_close(&mut self) -> Result<(), CalcError> {
        match self.next() {
            Some(Token { kind: Kind::Close, .. }) => Ok(()),
            Some(tok) => Err(CalcError::Unexpected(tok.kind.to_string(), tok.at)),
            None => Err(CalcError::UnexpectedEnd("')'")),
        }
    }
}

/// Apply function `name` (called at offset `at`) to `args`.
fn call(name: &str, args: &[f64], at: usize) -> Result<f64, CalcError> {
    let arity = |expected: &'static str| CalcError::Arity { name: name.to_string(), expected, got: args.len(), at };
    let one = || match args {
        [x] => Ok(*x),
        _ => Err(arity("1")),
    };
    match name {
        "min" | "max" => {
            let Some((first, rest)) = args.split_first() else {
                return Err(arity("at least 1"));
            };
            Ok(rest.iter().fold(*first, |acc, x| if name == "min" { acc.min(*x) } else { acc.max(*x) }))
        }
        "sqrt" => {
            let x = one()?;
            if x < 0.0 {
                return Err(CalcError::Domain(format!("sqrt of negative {x}"), at));
            }
            Ok(x.sqrt())
        }
        "ln" | "log10" => {
            let x = one()?;
            if x <= 0.0 {
                return Err(CalcError::Domain(format!("{name} of non-positive {x}"), at));
            }
            Ok(if name == "ln" { x.ln() } else { x.log10() })
        }
        "abs" => Ok(one()?.abs()),
        "round" => Ok(one()?.round()),
        "floor" => Ok(one()?.floor()),
        "ceil" => Ok(one()?.ceil()),
        "exp" => Ok(one()?.exp()),
        "sin" => Ok(one()?.sin()),
        "cos" => Ok(one()?.cos()),
        "tan" => Ok(one()?.tan()),
        _ => Err(CalcError::UnknownName(name.to_string(), at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> f64 {
        match evaluate(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match evaluate(s) {
            Ok(v) => panic!("{s:?} evaluated to {v}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(eval("2*(3+4)"), 14.0);
        assert_eq!(eval("2+3*4"), 14.0);
        assert_eq!(eval("10-4-3"), 3.0);
        assert_eq!(eval("100/10/5"), 2.0);
        assert_eq!(eval("2^3^2"), 512.0);
        assert_eq!(eval("(2^3)^2"), 64.0);
        assert_eq!(eval("2*3^2"), 18.0);
        assert_eq!(eval("7 % 4 * 2"), 6.0);
        assert_eq!(eval("1 + 7 % 4"), 4.0);
    }

    #[test]
    fn unary_signs() {
        assert_eq!(eval("-3"), -3.0);
        assert_eq!(eval("--3"), 3.0);
        assert_eq!(eval("+-+3"), -3.0);
        assert_eq!(eval("-2^2"), -4.0);
        assert_eq!(eval("2^-1"), 0.5);
        assert_eq!(eval("4*-2"), -8.0);
        assert_eq!(eval("-(1+2)*3"), -9.0);
    }

    #[test]
    fn numbers() {
        assert_eq!(eval("3.25"), 3.25);
        assert_eq!(eval(".5 + 1."), 1.5);
        assert_eq!(eval("1e3"), 1000.0);
        assert_eq!(eval("2.5E-1"), 0.25);
        assert_eq!(eval("  42  "), 42.0);
        assert_eq!(eval("0.1 + 0.2"), 0.1 + 0.2);
        assert_eq!(eval("-7 % 3"), -1.0);
        assert_eq!(eval("5.5 % 2"), 1.5);
        assert_eq!(eval("6 × 7 ÷ 2"), 21.0);
    }

    #[test]
    fn functions_and_constants() {
        assert_eq!(eval("sqrt(16)"), 4.0);
        assert_eq!(eval("abs(-2.5)"), 2.5);
        assert_eq!(eval("min(3, 1, 2)"), 1.0);
        assert_eq!(eval("max(3, 1+9, 2)"), 10.0);
        assert_eq!(eval("MAX(1)"), 1.0);
        assert_eq!(eval("round(2.5) + floor(-1.5) + ceil(1.2)"), 3.0 - 2.0 + 2.0);
        assert_eq!(eval("ln(e)"), 1.0);
        assert_eq!(eval("log10(1000)"), 3.0);
        assert!((eval("sin(pi/2)") - 1.0).abs() < 1e-12);
        assert!((eval("2*pi") - std::f64::consts::TAU).abs() < 1e-12);
        assert_eq!(eval("sqrt(max(9, 4)) ^ 2"), 9.0);
    }

    #[test]
    fn syntax_errors_name_the_token_and_position() {
        assert_eq!(err("(1+2))"), "unexpected ')' at 5");
        assert_eq!(err("2*(3+)"), "unexpected ')' at 5");
        assert_eq!(err("1 2"), "unexpected '2' at 2");
        assert_eq!(err("*3"), "unexpected '*' at 0");
        assert_eq!(err("2 $ 3"), "unexpected character '$' at 2");
        assert_eq!(err("max(1 2)"), "unexpected '2' at 6");
        assert_eq!(err("(1+2"), "unexpected end of the expression: expected ')'");
        assert_eq!(err("3+"), "unexpected end of the expression: expected a number, a name or '('");
        assert_eq!(err("min(1,"), "unexpected end of the expression: expected a number, a name or '('");
        assert_eq!(err("1.2.3"), "malformed number '1.2.3' at 0");
        assert_eq!(err("2e+"), "malformed number '2e+' at 0");
        assert_eq!(err(" . "), "malformed number '.' at 1");
        assert_eq!(err("   "), "the expression is empty");
    }

    #[test]
    fn position_counts_characters_not_bytes() {
        assert_eq!(err("é+)"), "unexpected character 'é' at 0");
        assert_eq!(err("6×)"), "unexpected ')' at 2");
    }

    #[test]
    fn arithmetic_errors() {
        assert_eq!(err("1/0"), "division by zero at 1");
        assert_eq!(err("1 % (2-2)"), "division by zero at 2");
        assert_eq!(err("0^-1"), "division by zero at 1");
        assert_eq!(err("sqrt(-4)"), "sqrt of negative -4 at 0");
        assert_eq!(err("ln(0)"), "ln of non-positive 0 at 0");
        assert_eq!(err("(-8)^(1/3)"), "-8^0.3333333333333333 is not a real number at 4");
        assert_eq!(err("10^400"), "the result is too large to represent");
        assert_eq!(err("sqrt(1, 2)"), "sqrt() at 0 takes 1 argument(s), got 2");
        assert_eq!(err("max()"), "max() at 0 takes at least 1 argument(s), got 0");
        assert!(err("foo(1)").starts_with("unknown name 'foo' at 0; known: pi, e, sqrt"));
        assert!(err("2*x").starts_with("unknown name 'x' at 2"));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}1{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert_eq!(eval(&ok), 1.0);
        let deep = format!("{}1{}", "(".repeat(10_000 / 2 - 1), ")".repeat(10_000 / 2 - 1));
        assert!(err(&deep).contains("nests deeper than 64 levels"));
        let signs = format!("{}1", "-".repeat(5_000));
        assert!(err(&signs).contains("nests deeper"));
        let powers = vec!["2"; 3_000].join("^");
        assert!(err(&powers).contains("nests deeper"));
        let calls = format!("{}1{}", "abs(".repeat(1_000), ")".repeat(1_000));
        assert!(err(&calls).contains("nests deeper"));
    }

    #[test]
    fn long_input_is_refused_up_front() {
        let long = "1+".repeat(MAX_LEN) + "1";
        assert_eq!(
            err(&long),
            format!("the expression has {} characters; at most {MAX_LEN} are accepted", 2 * MAX_LEN + 1)
        );
    }

    #[test]
    fn flat_long_sums_do_not_recurse() {
        let sum = vec!["1"; 4_000].join("+");
        assert_eq!(eval(&sum), 4_000.0);
    }
}
