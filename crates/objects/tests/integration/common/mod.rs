//! A tiny parser for Python literal expressions and calls, so that test
//! scenarios can be written once as Python text and run both on CPython and
//! on our referents.

#![allow(dead_code)]

use mpmanager_objects::Kwargs;
use mpmanager_pickle::{Slice, Value};
use num_bigint::BigInt;

pub struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(s: &'a str) -> Parser<'a> {
        Parser {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self.s.get(self.pos).unwrap_or(&0)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == c {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) {
        assert!(
            self.eat(c),
            "expected {:?} at {} in {:?}",
            c as char,
            self.pos,
            self.text()
        );
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.s).into_owned()
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    /// `name(args…, kw=…)` → (name, args, kwargs).
    pub fn call(&mut self) -> (String, Vec<Value>, Kwargs) {
        let name = self.ident();
        self.expect(b'(');
        let (args, kw) = self.arglist(b')');
        (name, args, kw)
    }

    fn arglist(&mut self, close: u8) -> (Vec<Value>, Kwargs) {
        let mut args = Vec::new();
        let mut kw = Kwargs::new();
        loop {
            if self.eat(close) {
                break;
            }
            // keyword?
            let save = self.pos;
            let id = self.ident();
            if !id.is_empty() && self.peek() == b'=' && self.s.get(self.pos + 1) != Some(&b'=') {
                self.pos += 1;
                let v = self.value();
                kw.insert(id, v);
            } else {
                self.pos = save;
                args.push(self.value());
            }
            if !self.eat(b',') {
                self.expect(close);
                break;
            }
        }
        (args, kw)
    }

    fn seq(&mut self, close: u8) -> (Vec<Value>, bool) {
        let mut items = Vec::new();
        let mut trailing_comma = false;
        loop {
            if self.eat(close) {
                break;
            }
            items.push(self.value());
            trailing_comma = self.eat(b',');
            if !trailing_comma {
                self.expect(close);
                break;
            }
        }
        (items, trailing_comma)
    }

    fn string(&mut self) -> Vec<u32> {
        let q = self.s[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        let rest = std::str::from_utf8(&self.s[self.pos..]).unwrap();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c as u32 == q as u32 {
                self.pos += i + 1;
                return out;
            }
            if c == '\\' {
                let (_, e) = chars.next().unwrap();
                match e {
                    'n' => out.push(10),
                    't' => out.push(9),
                    '\\' => out.push(92),
                    '\'' => out.push(39),
                    '"' => out.push(34),
                    'x' => {
                        let h: String = (0..2).map(|_| chars.next().unwrap().1).collect();
                        out.push(u32::from_str_radix(&h, 16).unwrap());
                    }
                    'u' => {
                        let h: String = (0..4).map(|_| chars.next().unwrap().1).collect();
                        out.push(u32::from_str_radix(&h, 16).unwrap());
                    }
                    other => panic!("escape {other}"),
                }
            } else {
                out.push(c as u32);
            }
        }
        panic!("unterminated string")
    }

    pub fn value(&mut self) -> Value {
        let c = self.peek();
        match c {
            b'[' => {
                self.pos += 1;
                Value::list(self.seq(b']').0)
            }
            b'(' => {
                self.pos += 1;
                let (items, comma) = self.seq(b')');
                if items.len() == 1 && !comma {
                    items.into_iter().next().unwrap()
                } else {
                    Value::tuple(items)
                }
            }
            b'{' => {
                self.pos += 1;
                if self.eat(b'}') {
                    return Value::dict(vec![]).unwrap();
                }
                let first = self.value();
                if self.eat(b':') {
                    let v = self.value();
                    let mut pairs = vec![(first, v)];
                    while self.eat(b',') {
                        if self.peek() == b'}' {
                            break;
                        }
                        let k = self.value();
                        self.expect(b':');
                        pairs.push((k, self.value()));
                    }
                    self.expect(b'}');
                    Value::dict(pairs).unwrap()
                } else {
                    let mut items = vec![first];
                    while self.eat(b',') {
                        if self.peek() == b'}' {
                            break;
                        }
                        items.push(self.value());
                    }
                    self.expect(b'}');
                    Value::set(items).unwrap()
                }
            }
            b'\'' | b'"' => {
                let cps = self.string();
                Value::Str(mpmanager_pickle::PyStr::from_code_points(cps).unwrap())
            }
            b'-' | b'0'..=b'9' | b'.' => {
                let start = self.pos;
                self.pos += 1;
                while self.pos < self.s.len()
                    && (self.s[self.pos].is_ascii_alphanumeric()
                        || b".+-*".contains(&self.s[self.pos]))
                    && (!b"+-".contains(&self.s[self.pos]) || b"eE".contains(&self.s[self.pos - 1]))
                {
                    self.pos += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.pos]).unwrap();
                if let Some((b, e)) = t.split_once("**") {
                    // Python: -2**80 == -(2**80).
                    let (neg, b) = match b.strip_prefix('-') {
                        Some(b) => (true, b),
                        None => (false, b),
                    };
                    let b: BigInt = b.parse().unwrap();
                    let e: u32 = e.parse().unwrap();
                    let v = num_traits::pow(b, e as usize);
                    return Value::from_bigint(if neg { -v } else { v });
                }
                if t.contains(['.', 'e']) {
                    Value::Float(t.parse().unwrap())
                } else {
                    Value::from_bigint(t.parse::<BigInt>().unwrap())
                }
            }
            _ => {
                let id = self.ident();
                match id.as_str() {
                    "None" => Value::None,
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "b" => {
                        let cps = self.string();
                        Value::bytes(&cps.iter().map(|&c| c as u8).collect::<Vec<_>>())
                    }
                    "slice" => {
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        let (start, stop, step) = match a.len() {
                            1 => (Value::None, a[0].clone(), Value::None),
                            2 => (a[0].clone(), a[1].clone(), Value::None),
                            _ => (a[0].clone(), a[1].clone(), a[2].clone()),
                        };
                        Value::Slice(std::sync::Arc::new(Slice { start, stop, step }))
                    }
                    "set" => {
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        match a.first() {
                            None => Value::set(vec![]).unwrap(),
                            Some(v) => {
                                Value::set(mpmanager_objects::args::iterate(v).unwrap()).unwrap()
                            }
                        }
                    }
                    "frozenset" => {
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        Value::frozenset(mpmanager_objects::args::iterate(&a[0]).unwrap()).unwrap()
                    }
                    "bytearray" => {
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        let Value::Bytes(b) = &a[0] else { panic!() };
                        Value::bytearray(b.to_vec())
                    }
                    "float" => {
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        Value::Float(a[0].as_str().unwrap().parse().unwrap())
                    }
                    "array" => {
                        // array('i', [..]) as ForkingPickler sends it:
                        // array.array(typecode, native bytes).
                        self.expect(b'(');
                        let (a, _) = self.arglist(b')');
                        let arr =
                            mpmanager_objects::types::ArrayObject::array(&a[0], &a[1]).unwrap();
                        use mpmanager_objects::Referent;
                        arr.get_value().unwrap()
                    }
                    other => panic!("unknown literal {other:?} in {:?}", self.text()),
                }
            }
        }
    }
}

pub fn parse_call(s: &str) -> (String, Vec<Value>, Kwargs) {
    let mut p = Parser::new(s);
    let r = p.call();
    assert_eq!(p.peek(), 0, "trailing text in {s:?}");
    r
}
