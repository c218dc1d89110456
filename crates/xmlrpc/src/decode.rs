//! The decoder: `xmlrpc.client.loads(data.decode('utf-8'))` and the
//! `(obj,), method = …` unpacking of `multiprocessing`'s `_xml_loads`.
//!
//! The XML is parsed with `quick-xml`, with the checks expat makes that a
//! CPython peer relies on (well-formedness, one root element, characters
//! XML cannot carry, predefined entities only, line-end normalization);
//! the events then drive the same stack machine as CPython's
//! `Unmarshaller`, so tolerant inputs are read the same way.

use mpmanager_pickle::{shared, Dict, Key, Value};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::base64::decodebytes;
use crate::wrappers::{binary, datetime};

/// Limits for [`decode_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Largest accepted input, in bytes (default 1 GiB).
    pub max_input: usize,
    /// Deepest nesting of arrays and structs (default 1000).
    pub max_depth: usize,
    /// Deepest nesting of XML elements of any kind (default 4096).
    pub max_element_depth: usize,
    /// Most digits in an integer (default 4300, as CPython 3.11+'s
    /// `sys.get_int_max_str_digits()`).
    pub max_int_digits: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_input: 1 << 30,
            max_depth: 1000,
            max_element_depth: 4096,
            max_int_digits: 4300,
        }
    }
}

/// Why a payload is not a message. [`DecodeError::exception_line`] gives
/// the exception CPython's `_xml_loads` raises for the same input.
///
/// ```
/// use mpmanager_xmlrpc::decode;
/// let e = decode(b"\xff").unwrap_err();
/// assert_eq!(
///     e.exception_line(),
///     "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
/// );
/// let e = decode(b"<params><param><value><foo/></value></param></params>").unwrap_err();
/// assert_eq!(e.exception_line(), "xmlrpc.client.ResponseError: ResponseError(\"unknown tag 'foo'\")");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is not UTF-8.
    #[error("'utf-8' codec can't decode {what} in position {position}: {reason}")]
    Utf8 {
        /// `byte 0xff` or `bytes`.
        what: String,
        /// `N` or `N-M`.
        position: String,
        /// `invalid start byte`, `invalid continuation byte` or
        /// `unexpected end of data`.
        reason: &'static str,
    },
    /// Not well-formed XML (expat's `ExpatError`).
    #[error("{message}: line {line}, column {column}")]
    Xml {
        /// What is wrong, in expat's words where they are known
        /// (`not well-formed (invalid token)`, `mismatched tag`, …).
        message: String,
        /// 1-based line.
        line: usize,
        /// 0-based column, in characters.
        column: usize,
    },
    /// The XML is not an XML-RPC response (`xmlrpc.client.ResponseError`);
    /// `None` for a bare `ResponseError()` (no `<params>`, or an open
    /// array/struct).
    #[error("ResponseError({})", .0.as_ref().map(|m| format!("{m:?}").replace('\\', "")).unwrap_or_default())]
    Response(Option<String>),
    /// A `<fault>` response.
    #[error("<Fault {code}: {string}>")]
    Fault {
        /// `faultCode`, as repr.
        code: String,
        /// `faultString`, as repr.
        string: String,
    },
    /// A `<boolean>` other than `0` or `1`.
    #[error("bad boolean value")]
    BadBoolean,
    /// An `<int>` (`<i4>`, …) that is not an integer.
    #[error("invalid literal for int() with base 10: {0}")]
    BadInt(String),
    /// An integer with more digits than allowed.
    #[error("Exceeds the limit ({limit}) for integer string conversion: value has {digits} digits; use sys.set_int_max_str_digits() to increase the limit")]
    IntTooLong {
        /// The limit.
        limit: usize,
        /// The digits found.
        digits: usize,
    },
    /// A `<double>` that is not a float.
    #[error("could not convert string to float: {0}")]
    BadFloat(String),
    /// A `<bigdecimal>` that is not a decimal.
    #[error("[<class 'decimal.ConversionSyntax'>]")]
    BadDecimal,
    /// Bad `<base64>` content (`binascii.Error`).
    #[error("{0}")]
    BadBase64(String),
    /// Non-ASCII `<base64>` content.
    #[error("'ascii' codec can't encode character in base64 data")]
    NonAsciiBase64,
    /// A struct with an odd number of items.
    #[error("list index out of range")]
    OddStruct,
    /// A struct key that is not hashable.
    #[error("unhashable type: '{0}'")]
    Unhashable(String),
    /// Not exactly one `<param>`.
    #[error("{}", if *.0 < 1 { format!("not enough values to unpack (expected 1, got {})", .0) } else { "too many values to unpack (expected 1)".to_string() })]
    ParamCount(usize),
    /// Input larger than [`DecodeOptions::max_input`].
    #[error("XML-RPC input of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Nesting deeper than the limits.
    #[error("XML-RPC nesting deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// The `Type: message` line CPython's traceback would end with.
    pub fn exception_line(&self) -> String {
        let ty = match self {
            DecodeError::Utf8 { .. } => "UnicodeDecodeError",
            DecodeError::Xml { .. } => "xml.parsers.expat.ExpatError",
            DecodeError::Response(_) => "xmlrpc.client.ResponseError",
            DecodeError::Fault { .. } => "xmlrpc.client.Fault",
            DecodeError::BadBoolean | DecodeError::Unhashable(_) => "TypeError",
            DecodeError::BadInt(_)
            | DecodeError::IntTooLong { .. }
            | DecodeError::BadFloat(_)
            | DecodeError::ParamCount(_) => "ValueError",
            DecodeError::BadDecimal => "decimal.InvalidOperation",
            DecodeError::BadBase64(_) => "binascii.Error",
            DecodeError::NonAsciiBase64 => "UnicodeEncodeError",
            DecodeError::OddStruct => "IndexError",
            DecodeError::TooLarge { .. } => "MemoryError",
            DecodeError::TooDeep { .. } => "RecursionError",
        };
        format!("{ty}: {self}")
    }
}

/// Reads one message with default limits.
///
/// ```
/// use mpmanager_pickle::repr;
/// let v = mpmanager_xmlrpc::decode(
///     b"<params><param><value><array><data><value>x</value><value><i4>7</i4></value>\
///       </data></array></value></param></params>",
/// )
/// .unwrap();
/// assert_eq!(repr(&v), "['x', 7]");
/// ```
pub fn decode(data: &[u8]) -> Result<Value, DecodeError> {
    decode_with(data, &DecodeOptions::default())
}

/// Reads one message: the single parameter of an XML-RPC `<params>`.
pub fn decode_with(data: &[u8], opts: &DecodeOptions) -> Result<Value, DecodeError> {
    if data.len() > opts.max_input {
        return Err(DecodeError::TooLarge {
            len: data.len(),
            limit: opts.max_input,
        });
    }
    let text = std::str::from_utf8(data).map_err(|e| utf8_error(data, &e))?;
    let mut u = Unmarshaller::new(opts);
    parse(text, &mut u, opts)?;
    let mut values = u.close()?;
    if values.len() != 1 {
        return Err(DecodeError::ParamCount(values.len()));
    }
    Ok(values.pop().expect("one value"))
}

fn utf8_error(data: &[u8], e: &std::str::Utf8Error) -> DecodeError {
    let pos = e.valid_up_to();
    let b = data[pos];
    match e.error_len() {
        None => {
            let n = data.len() - pos;
            if n == 1 {
                DecodeError::Utf8 {
                    what: format!("byte 0x{b:02x}"),
                    position: pos.to_string(),
                    reason: "unexpected end of data",
                }
            } else {
                DecodeError::Utf8 {
                    what: "bytes".into(),
                    position: format!("{pos}-{}", data.len() - 1),
                    reason: "unexpected end of data",
                }
            }
        }
        Some(n) if n > 1 => DecodeError::Utf8 {
            what: "bytes".into(),
            position: format!("{pos}-{}", pos + n - 1),
            reason: "invalid continuation byte",
        },
        Some(_) => {
            let start = matches!(b, 0x80..=0xC1 | 0xF5..=0xFF);
            DecodeError::Utf8 {
                what: format!("byte 0x{b:02x}"),
                position: pos.to_string(),
                reason: if start {
                    "invalid start byte"
                } else {
                    "invalid continuation byte"
                },
            }
        }
    }
}

/// Characters XML 1.0 can carry.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// 1-based line and 0-based column (in characters) of byte `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |i| i + 1);
    let mut line = 1;
    let mut prev_cr = false;
    for &b in before {
        match b {
            b'\n' if prev_cr => {}
            b'\n' | b'\r' => line += 1,
            _ => {}
        }
        prev_cr = b == b'\r';
    }
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    (line, col)
}

fn xml_err(text: &str, pos: usize, message: &str) -> DecodeError {
    let (line, column) = line_col(text, pos);
    DecodeError::Xml {
        message: message.to_string(),
        line,
        column,
    }
}

/// Checks raw character data (`base` is its byte offset in `text`):
/// every character must be one XML can carry.
fn check_chars(text: &str, raw: &str, base: usize) -> Result<(), DecodeError> {
    if let Some((i, _)) = raw.char_indices().find(|&(_, c)| !xml_char(c)) {
        return Err(xml_err(text, base + i, "not well-formed (invalid token)"));
    }
    Ok(())
}

/// Normalizes line ends (`\r\n` and `\r` → `\n`) as expat does.
fn normalize_newlines(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.contains('\r') {
        std::borrow::Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// Resolves `&…;` references in character data (after line-end
/// normalization); `base` locates errors.
fn unescape(text: &str, raw: &str, base: usize) -> Result<String, DecodeError> {
    let norm = normalize_newlines(raw);
    if !norm.contains('&') {
        if norm.contains("]]>") {
            let i = raw.find("]]>").unwrap_or(0);
            return Err(xml_err(text, base + i, "not well-formed (invalid token)"));
        }
        return Ok(norm.into_owned());
    }
    let mut out = String::with_capacity(norm.len());
    let mut rest: &str = &norm;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            return Err(xml_err(text, base, "not well-formed (invalid token)"));
        };
        let name = &after[..semi];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => None,
        };
        let c = match c {
            Some(c) => c,
            None => {
                let num = if let Some(h) = name.strip_prefix("#x") {
                    u32::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
                } else if let Some(d) = name.strip_prefix('#') {
                    d.parse::<u32>()
                        .ok()
                        .filter(|_| d.bytes().all(|b| b.is_ascii_digit()))
                } else {
                    return Err(xml_err(text, base, "undefined entity"));
                };
                match num.and_then(char::from_u32).filter(|&c| xml_char(c)) {
                    Some(c) => c,
                    None => {
                        return Err(xml_err(text, base, "reference to invalid character number"))
                    }
                }
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse(text: &str, u: &mut Unmarshaller<'_>, opts: &DecodeOptions) -> Result<(), DecodeError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = false;
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let pos = reader.buffer_position() as usize;
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                let epos = reader.error_position() as usize;
                let message = match &e {
                    quick_xml::Error::IllFormed(
                        quick_xml::errors::IllFormedError::MismatchedEndTag { .. },
                    )
                    | quick_xml::Error::IllFormed(
                        quick_xml::errors::IllFormedError::UnmatchedEndTag(_),
                    ) => "mismatched tag",
                    quick_xml::Error::Syntax(_) => "unclosed token",
                    _ => "not well-formed (invalid token)",
                };
                return Err(xml_err(text, epos, message));
            }
        };
        let outside = depth == 0;
        match ev {
            Event::Eof => {
                if depth > 0 || !seen_root {
                    let message = if seen_root || text.trim().starts_with('<') {
                        if seen_root {
                            "unclosed token"
                        } else {
                            "no element found"
                        }
                    } else {
                        "syntax error"
                    };
                    return Err(xml_err(text, text.len(), message));
                }
                return Ok(());
            }
            Event::Start(e) | Event::Empty(e) if outside && seen_root => {
                let _ = e;
                return Err(xml_err(text, pos, "junk after document element"));
            }
            Event::Start(e) => {
                check_chars(text, &text[pos..reader.buffer_position() as usize], pos)?;
                depth += 1;
                seen_root = true;
                if depth > opts.max_element_depth {
                    return Err(DecodeError::TooDeep {
                        limit: opts.max_element_depth,
                    });
                }
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                u.start(&name)?;
            }
            Event::Empty(e) => {
                check_chars(text, &text[pos..reader.buffer_position() as usize], pos)?;
                seen_root = true;
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                u.start(&name)?;
                u.end(&name)?;
            }
            Event::End(e) => {
                depth -= 1;
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                u.end(&name)?;
            }
            Event::Text(t) => {
                let raw = std::str::from_utf8(t.as_ref()).unwrap_or_default();
                check_chars(text, raw, pos)?;
                if outside {
                    if let Some(i) = raw.find(|c: char| !matches!(c, ' ' | '\t' | '\n' | '\r')) {
                        let message = if seen_root {
                            "junk after document element"
                        } else {
                            "syntax error"
                        };
                        return Err(xml_err(text, pos + i, message));
                    }
                    continue;
                }
                u.data(&unescape(text, raw, pos)?);
            }
            Event::CData(t) => {
                let raw = std::str::from_utf8(t.as_ref()).unwrap_or_default();
                check_chars(text, raw, pos)?;
                if outside {
                    return Err(xml_err(text, pos, "syntax error"));
                }
                u.data(&normalize_newlines(raw));
            }
            Event::Decl(_) if pos != 0 || seen_root => {
                return Err(xml_err(
                    text,
                    pos,
                    "XML or text declaration not at start of entity",
                ));
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {}
        }
    }
}

/// CPython's `xmlrpc.client.Unmarshaller`, event for event.
struct Unmarshaller<'a> {
    opts: &'a DecodeOptions,
    ty: Option<&'static str>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    data: String,
    value: bool,
}

const KNOWN: &[&str] = &[
    "nil",
    "boolean",
    "i1",
    "i2",
    "i4",
    "i8",
    "int",
    "biginteger",
    "double",
    "float",
    "bigdecimal",
    "string",
    "name",
    "array",
    "struct",
    "base64",
    "dateTime.iso8601",
    "value",
    "params",
    "fault",
    "methodName",
];

fn local(tag: &str) -> &str {
    tag.rsplit(':').next().unwrap_or(tag)
}

impl<'a> Unmarshaller<'a> {
    fn new(opts: &'a DecodeOptions) -> Self {
        Unmarshaller {
            opts,
            ty: None,
            stack: Vec::new(),
            marks: Vec::new(),
            data: String::new(),
            value: false,
        }
    }

    fn close(self) -> Result<Vec<Value>, DecodeError> {
        if self.ty.is_none() || !self.marks.is_empty() {
            return Err(DecodeError::Response(None));
        }
        if self.ty == Some("fault") {
            let first = self
                .stack
                .first()
                .map(mpmanager_pickle::repr)
                .unwrap_or_default();
            return Err(DecodeError::Fault {
                code: first.clone(),
                string: first,
            });
        }
        Ok(self.stack)
    }

    fn start(&mut self, tag: &str) -> Result<(), DecodeError> {
        let tag = local(tag);
        if tag == "array" || tag == "struct" {
            if self.marks.len() >= self.opts.max_depth {
                return Err(DecodeError::TooDeep {
                    limit: self.opts.max_depth,
                });
            }
            self.marks.push(self.stack.len());
        }
        self.data.clear();
        if self.value && !KNOWN.contains(&tag) {
            return Err(DecodeError::Response(Some(format!("unknown tag '{tag}'"))));
        }
        self.value = tag == "value";
        Ok(())
    }

    fn data(&mut self, text: &str) {
        self.data.push_str(text);
    }

    fn end(&mut self, tag: &str) -> Result<(), DecodeError> {
        let data = std::mem::take(&mut self.data);
        let r = self.dispatch(local(tag), &data);
        self.data = data;
        r
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
        self.value = false;
    }

    fn dispatch(&mut self, tag: &str, data: &str) -> Result<(), DecodeError> {
        match tag {
            "nil" => self.push(Value::None),
            "boolean" => match data {
                "0" => self.push(Value::Bool(false)),
                "1" => self.push(Value::Bool(true)),
                _ => return Err(DecodeError::BadBoolean),
            },
            "i1" | "i2" | "i4" | "i8" | "int" | "biginteger" => {
                let v = parse_int(data, self.opts.max_int_digits)?;
                self.push(v);
            }
            "double" | "float" => {
                let v = parse_float(data)?;
                self.push(Value::Float(v));
            }
            "bigdecimal" => {
                let t = data.trim();
                if parse_float(t).is_err() {
                    return Err(DecodeError::BadDecimal);
                }
                let d = mpmanager_pickle::Object::reduce(
                    Value::global("decimal", "Decimal"),
                    vec![Value::str(t)],
                );
                self.push(Value::Object(shared(d)));
            }
            "string" | "name" => self.push(Value::str(data)),
            "array" => {
                let mark = self.marks.pop().unwrap_or(0);
                let items = self.stack.split_off(mark);
                self.push(Value::list(items));
            }
            "struct" => {
                let mark = self.marks.pop().unwrap_or(0);
                let items = self.stack.split_off(mark);
                let mut d = Dict::default();
                let mut it = items.into_iter();
                while let Some(k) = it.next() {
                    let Some(v) = it.next() else {
                        return Err(DecodeError::OddStruct);
                    };
                    let k =
                        Key::new(k.clone()).map_err(|_| DecodeError::Unhashable(k.type_name()))?;
                    d.insert(k, v);
                }
                self.push(Value::Dict(shared(d)));
            }
            "base64" => {
                if !data.is_ascii() {
                    return Err(DecodeError::NonAsciiBase64);
                }
                let bytes = decodebytes(data.as_bytes()).map_err(DecodeError::BadBase64)?;
                self.push(binary(&bytes));
            }
            "dateTime.iso8601" => {
                // `end_dateTime` does not reset the `_value` flag.
                self.stack.push(datetime(data.trim()));
            }
            "value" if self.value => self.push(Value::str(data)),
            "params" => self.ty = Some("params"),
            "fault" => self.ty = Some("fault"),
            "methodName" => self.ty = Some("methodName"),
            _ => {}
        }
        Ok(())
    }
}

/// Python's whitespace for `int()`/`float()` (ASCII and the common
/// Unicode spaces).
fn py_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `int(text)`: optional sign, ASCII digits with single underscores
/// between them, surrounding whitespace.
fn parse_int(data: &str, max_digits: usize) -> Result<Value, DecodeError> {
    let bad = || DecodeError::BadInt(mpmanager_pickle::repr(&Value::str(data)));
    let t = py_trim(data);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return Err(bad());
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.len() > max_digits {
        return Err(DecodeError::IntTooLong {
            limit: max_digits,
            digits: clean.len(),
        });
    }
    let signed = if neg { format!("-{clean}") } else { clean };
    if let Ok(i) = signed.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    let big: num_bigint::BigInt = signed.parse().map_err(|_| bad())?;
    Ok(Value::from_bigint(big))
}

/// `float(text)`.
fn parse_float(data: &str) -> Result<f64, DecodeError> {
    let bad = || DecodeError::BadFloat(mpmanager_pickle::repr(&Value::str(data)));
    let t = py_trim(data);
    if t.contains("__") || t.starts_with('_') || t.ends_with('_') {
        return Err(bad());
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < lower.len() {
        return Err(bad());
    }
    match unsigned {
        "inf" | "infinity" | "nan" => {}
        u if u.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && u.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-')) => {}
        _ => return Err(bad()),
    }
    lower.parse::<f64>().map_err(|_| bad())
}
