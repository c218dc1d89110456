//! The encoder: `xmlrpc.client.dumps((obj,), None, None, None, 1)`.

use mpmanager_pickle::{Construct, Object, Value};

use crate::base64::encodebytes;
use crate::wrappers::{as_binary, attr_of};

/// Limits for [`encode_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Deepest nesting of arrays and structs written (default 1000).
    pub max_depth: usize,
    /// Largest output, in bytes (default 1 GiB): a value that shares one
    /// container many times is written out in full each time.
    pub max_output: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            max_depth: 1000,
            max_output: 1 << 30,
        }
    }
}

/// Why a value cannot be written, as CPython's marshaller (or the UTF-8
/// encoding of its output) would fail. [`EncodeError::exception_line`] is
/// the `Type: message` line CPython's traceback ends with.
///
/// ```
/// use mpmanager_pickle::Value;
/// use mpmanager_xmlrpc::encode;
/// let e = encode(&Value::Int(1 << 31)).unwrap_err();
/// assert_eq!(e.exception_line(), "OverflowError: int exceeds XML-RPC limits");
/// let e = encode(&Value::set(vec![]).unwrap()).unwrap_err();
/// assert_eq!(e.exception_line(), "TypeError: cannot marshal <class 'set'> objects");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An int outside `-2**31 ..= 2**31-1`.
    #[error("int exceeds XML-RPC limits")]
    IntOverflow,
    /// A type without a marshaller and without a `__dict__`.
    #[error("cannot marshal <class '{class}'> objects")]
    CannotMarshal {
        /// The qualified class name, e.g. `set` or `array.array`.
        class: String,
    },
    /// A list or tuple that contains itself.
    #[error("cannot marshal recursive sequences")]
    RecursiveSequence,
    /// A dict that contains itself.
    #[error("cannot marshal recursive dictionaries")]
    RecursiveDict,
    /// A dict key that is not a `str`.
    #[error("dictionary key must be string")]
    KeyNotString,
    /// A `str` with lone surrogates: the output cannot be UTF-8 encoded.
    #[error("'utf-8' codec can't encode {what} in position {position}: surrogates not allowed")]
    Surrogates {
        /// `character '\udc80'` or `characters`.
        what: String,
        /// `N` or `N-M` (code point positions in the whole document).
        position: String,
    },
    /// Nesting deeper than [`EncodeOptions::max_depth`].
    #[error("maximum recursion depth exceeded while encoding an XML-RPC value")]
    TooDeep,
    /// Output larger than [`EncodeOptions::max_output`].
    #[error("XML-RPC output larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

impl EncodeError {
    /// The exception CPython raises for the same failure.
    pub fn exception_line(&self) -> String {
        let ty = match self {
            EncodeError::IntOverflow => "OverflowError",
            EncodeError::Surrogates { .. } => "UnicodeEncodeError",
            EncodeError::TooDeep => "RecursionError",
            EncodeError::TooLarge { .. } => "MemoryError",
            _ => "TypeError",
        };
        format!("{ty}: {self}")
    }
}

/// `xmlrpc.client.dumps((v,), None, None, None, 1).encode('utf-8')`, with
/// default limits.
///
/// ```
/// use mpmanager_pickle::Value;
/// let xml = mpmanager_xmlrpc::encode(&Value::Float(2.25)).unwrap();
/// assert_eq!(xml, b"<params>\n<param>\n<value><double>2.25</double></value>\n</param>\n</params>\n");
/// ```
pub fn encode(v: &Value) -> Result<Vec<u8>, EncodeError> {
    encode_with(v, &EncodeOptions::default())
}

/// [`encode()`] with explicit limits.
pub fn encode_with(v: &Value, opts: &EncodeOptions) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder {
        out: Vec::new(),
        opts,
        active: Vec::new(),
        surrogates: false,
    };
    e.out.extend_from_slice(b"<params>\n<param>\n");
    e.value(v, 0)?;
    e.out.extend_from_slice(b"</param>\n</params>\n");
    e.check_size()?;
    if e.surrogates {
        return Err(surrogate_error(&e.out));
    }
    Ok(e.out)
}

struct Encoder<'a> {
    /// WTF-8 until checked.
    out: Vec<u8>,
    opts: &'a EncodeOptions,
    /// Identities of the containers being written (recursion check).
    active: Vec<usize>,
    surrogates: bool,
}

fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(b),
        }
    }
}

/// The Python class name of a value without a marshaller.
fn class_name(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let o = o.read_recursive();
            // The class: `NEWOBJ`'s, a reconstructor's first argument, or
            // the callable itself (`datetime.datetime(…)`).
            let class = match (o.new_of(), o.global(), o.args_slice()) {
                (Some((g, _)), _, _) => Some(g.clone()),
                (None, Some(f), [Value::Global(cls), ..])
                    if f.is("array", "_array_reconstructor")
                        || f.is("copyreg", "_reconstructor") =>
                {
                    Some((**cls).clone())
                }
                (None, Some(f), _) => Some(f.clone()),
                _ => None,
            };
            match class {
                Some(g) if &*g.module == "builtins" => g.name.to_string(),
                Some(g) => format!("{}.{}", g.module, g.name),
                None => "object".into(),
            }
        }
        other => other.type_name(),
    }
}

impl Encoder<'_> {
    fn check_size(&self) -> Result<(), EncodeError> {
        if self.out.len() > self.opts.max_output {
            return Err(EncodeError::TooLarge {
                limit: self.opts.max_output,
            });
        }
        Ok(())
    }

    fn enter(
        &mut self,
        v: &Value,
        depth: usize,
        recursive: EncodeError,
    ) -> Result<(), EncodeError> {
        if depth >= self.opts.max_depth {
            return Err(EncodeError::TooDeep);
        }
        self.check_size()?;
        if let Some(id) = v.identity() {
            if self.active.contains(&id) {
                return Err(recursive);
            }
            self.active.push(id);
        } else {
            self.active.push(usize::MAX);
        }
        Ok(())
    }

    fn string(&mut self, s: &[u8]) {
        self.out.extend_from_slice(b"<value><string>");
        escape_into(s, &mut self.out);
        self.out.extend_from_slice(b"</string></value>\n");
    }

    fn base64(&mut self, data: &[u8]) {
        self.out.extend_from_slice(b"<value><base64>\n");
        encodebytes(data, &mut self.out);
        self.out.extend_from_slice(b"</base64></value>\n");
    }

    fn value(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        match v {
            Value::None => self.out.extend_from_slice(b"<value><nil/></value>"),
            Value::Bool(b) => {
                self.out.extend_from_slice(if *b {
                    b"<value><boolean>1</boolean></value>\n"
                } else {
                    b"<value><boolean>0</boolean></value>\n"
                });
            }
            Value::Int(i) => {
                if i32::try_from(*i).is_err() {
                    return Err(EncodeError::IntOverflow);
                }
                self.out
                    .extend_from_slice(format!("<value><int>{i}</int></value>\n").as_bytes());
            }
            Value::BigInt(_) => return Err(EncodeError::IntOverflow),
            Value::Float(f) => {
                self.out.extend_from_slice(b"<value><double>");
                self.out
                    .extend_from_slice(mpmanager_pickle::repr::float_repr(*f).as_bytes());
                self.out.extend_from_slice(b"</double></value>\n");
            }
            Value::Str(s) => {
                if s.has_surrogates() {
                    self.surrogates = true;
                }
                self.string(s.as_wtf8());
            }
            Value::Bytes(b) => self.base64(b),
            Value::ByteArray(b) => {
                let b = b.read_recursive().clone();
                self.base64(&b);
            }
            Value::Tuple(_) | Value::List(_) => {
                let items = match v {
                    Value::Tuple(t) => t.items.clone(),
                    Value::List(l) => l.read_recursive().items.clone(),
                    _ => unreachable!(),
                };
                self.enter(v, depth, EncodeError::RecursiveSequence)?;
                self.out.extend_from_slice(b"<value><array><data>\n");
                for item in &items {
                    self.value(item, depth + 1)?;
                }
                self.out.extend_from_slice(b"</data></array></value>\n");
                self.active.pop();
            }
            Value::Dict(_) => self.structure(v, depth)?,
            Value::Object(_) => self.object(v, depth)?,
            other => {
                return Err(EncodeError::CannotMarshal {
                    class: class_name(other),
                })
            }
        }
        Ok(())
    }

    fn structure(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        let Value::Dict(d) = v else {
            unreachable!("structure() of a non-dict")
        };
        let pairs: Vec<(Value, Value)> = d
            .read_recursive()
            .iter()
            .map(|(k, v)| (k.value().clone(), v.clone()))
            .collect();
        self.enter(v, depth, EncodeError::RecursiveDict)?;
        self.out.extend_from_slice(b"<value><struct>\n");
        for (k, val) in &pairs {
            self.out.extend_from_slice(b"<member>\n");
            let Value::Str(k) = k else {
                return Err(EncodeError::KeyNotString);
            };
            if k.has_surrogates() {
                self.surrogates = true;
            }
            self.out.extend_from_slice(b"<name>");
            escape_into(k.as_wtf8(), &mut self.out);
            self.out.extend_from_slice(b"</name>\n");
            self.value(val, depth + 1)?;
            self.out.extend_from_slice(b"</member>\n");
        }
        self.out.extend_from_slice(b"</struct></value>\n");
        self.active.pop();
        Ok(())
    }

    /// `dump_instance`: the `Binary`/`DateTime` wrappers write themselves;
    /// other instances are written as a struct of their `__dict__` (an
    /// exception's, usually empty; a plain instance's pickled state dict);
    /// objects without a `__dict__` cannot be marshalled.
    fn object(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        if let Some(data) = as_binary(v) {
            self.base64(&data);
            return Ok(());
        }
        if let Some(Value::Str(s)) = attr_of(v, "DateTime", "value") {
            // DateTime.encode writes its value unescaped.
            if s.has_surrogates() {
                self.surrogates = true;
            }
            self.out.extend_from_slice(b"<value><dateTime.iso8601>");
            self.out.extend_from_slice(s.as_wtf8());
            self.out.extend_from_slice(b"</dateTime.iso8601></value>\n");
            return Ok(());
        }
        let Value::Object(o) = v else {
            unreachable!("object() of a non-object")
        };
        let (state, plain_instance, exception) = {
            let o = o.read_recursive();
            (
                o.state.clone(),
                o.new_of().is_some(),
                looks_like_exception(&o),
            )
        };
        match state {
            Some(state @ Value::Dict(_)) if plain_instance || exception => {
                self.structure(&state, depth)
            }
            None if plain_instance || exception => {
                self.enter(v, depth, EncodeError::RecursiveDict)?;
                self.out
                    .extend_from_slice(b"<value><struct>\n</struct></value>\n");
                self.active.pop();
                Ok(())
            }
            _ => Err(EncodeError::CannotMarshal {
                class: class_name(v),
            }),
        }
    }
}

/// An exception instance as pickled: `REDUCE(cls, args)` of a class named
/// like one (`…Error`, `…Exception`, `StopIteration`, `queue.Empty`, …).
/// Exceptions have a `__dict__`, so CPython marshals them as a struct.
fn looks_like_exception(o: &Object) -> bool {
    if o.construct != Construct::Reduce || !matches!(o.args, Value::Tuple(_)) {
        return false;
    }
    let Some(g) = o.global() else { return false };
    let name = g.name.rsplit('.').next().unwrap_or(&g.name);
    name.ends_with("Error")
        || name.ends_with("Exception")
        || name.ends_with("Warning")
        || matches!(
            name,
            "StopIteration"
                | "StopAsyncIteration"
                | "KeyboardInterrupt"
                | "SystemExit"
                | "GeneratorExit"
                | "Empty"
                | "Full"
                | "ShutDown"
                | "Fault"
        )
}

/// The `UnicodeEncodeError` for the first run of lone surrogates in `wtf8`.
fn surrogate_error(wtf8: &[u8]) -> EncodeError {
    let s = mpmanager_pickle::PyStr::from_wtf8(wtf8);
    let cps: Vec<u32> = match &s {
        Some(s) => s.code_points().collect(),
        None => Vec::new(),
    };
    let is_sur = |c: u32| (0xD800..=0xDFFF).contains(&c);
    let start = cps.iter().position(|&c| is_sur(c)).unwrap_or(0);
    let end = start + cps[start..].iter().take_while(|&&c| is_sur(c)).count();
    if end <= start + 1 {
        EncodeError::Surrogates {
            what: format!(
                "character '\\u{:04x}'",
                cps.get(start).copied().unwrap_or(0)
            ),
            position: start.to_string(),
        }
    } else {
        EncodeError::Surrogates {
            what: "characters".into(),
            position: format!("{start}-{}", end - 1),
        }
    }
}
