//! The safe Python-literal parser (DECISIONS §1): strings (raw, triple-quoted, escapes,
//! implicit concatenation), ints, floats, True/False/None, lists, tuples, dicts, sets,
//! `+ - * / // %`, parentheses and unary minus, `#` comments. Nothing is ever evaluated.

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
}

/// Parse one config value. The error text says what is wrong and where in the value
/// (the caller adds file, line and key).
pub fn parse_literal(src: &str) -> Result<Value, String> {
    let _ = src;
    todo!("config/literal.rs")
}
