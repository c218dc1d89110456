//! The codec against CPython's own `xmlrpc.client`, for every installed
//! interpreter (skipped, with a message, where none is installed).
//!
//! * Encoding: CPython pickles each value of a corpus and dumps it with
//!   `xmlrpc.client.dumps((v,), None, None, None, 1)`; the Rust encoder,
//!   given the unpickled value, must produce the same bytes — or fail
//!   with the same exception line where CPython fails.
//! * Decoding: CPython `loads` a corpus of payloads (valid, tolerant and
//!   malformed); the Rust decoder must give the same value (compared
//!   structurally, `Binary`/`DateTime` by content) or an error of the same
//!   exception type.

use mpmanager_pickle::{decode as unpickle, repr, Value};
use mpmanager_testutil::pythons;
use mpmanager_xmlrpc::{as_binary, as_datetime, decode, encode};

const ENCODE_SCRIPT: &str = r#"
import sys, pickle, xmlrpc.client as x, datetime, array, collections
class Inst:
    def __init__(self): self.a = 1; self.b = [None]
class Empty: pass
rec = [1]; rec.append(rec)
recd = {}; recd['me'] = recd
shared = [1, 2]
for line in sys.stdin.read().splitlines():
    v = eval(line)
    p = pickle.dumps(v, 4).hex()
    try:
        out = ('OK ' + x.dumps((v,), None, None, None, 1).encode('utf-8').hex())
    except Exception as e:
        out = 'ERR %s: %s' % (type(e).__name__, e)
    print(p, out)
"#;

const ENCODE_CORPUS: &[&str] = &[
    "None",
    "True",
    "False",
    "0",
    "-1",
    "2**31-1",
    "-2**31",
    "2**31",
    "-2**31-1",
    "2**100",
    "0.0",
    "-0.0",
    "2.25",
    "1e16",
    "1e-7",
    "0.1",
    "float('inf')",
    "float('-inf')",
    "float('nan')",
    "123456789.123456789",
    "''",
    "'hello'",
    "'a & b < c > d \"q\" \\'s\\''",
    "'\\x00\\x01\\x1f\\x7f'",
    "'\\r\\n\\r\\t'",
    "'caf\\xe9 \\u4e2d\\u6587 \\U0001f600'",
    "'\\ud800'",
    "'ab\\udc80\\udc81cd'",
    "']]>'",
    "b''",
    "b'hi\\xe5'",
    "bytes(range(256))",
    "b'x' * 57",
    "b'x' * 58",
    "bytearray(b'abc')",
    "()",
    "[]",
    "(1,)",
    "('#RETURN', None)",
    "('hello', None, True, 2.25, b'hi\\xe5', 7)",
    "[[[]], [[1, [2]]]]",
    "{}",
    "{'a': 1, 'b': [1, {'c': None}]}",
    "{'<k&>': 'v'}",
    "{1: 2}",
    "{'a': 1, 2: 3}",
    "{'s': {1, 2}}",
    "{1, 2}",
    "frozenset()",
    "1j",
    "slice(1, 2)",
    "x.Binary(b'abc')",
    "x.Binary(b'')",
    "x.DateTime('20200101T00:00:00')",
    "x.DateTime('odd<value>')",
    "KeyError('zz')",
    "ValueError('x', 1)",
    "StopIteration()",
    "Inst()",
    "Empty()",
    "array.array('i', [1])",
    "rec",
    "recd",
    "[shared, shared, {'x': shared}]",
    "[1, 2**40]",
    "['\\ud800', 2**40]",
    "('#ERROR', KeyError('zz'))",
    "('#RETURN', ['x' * 100000])",
];

/// A structural rendering for comparisons: `Binary`/`DateTime` by content.
fn canon(v: &Value) -> String {
    if let Some(b) = as_binary(v) {
        return format!("Binary({})", repr(&Value::bytes(&b)));
    }
    if let Some(d) = as_datetime(v) {
        return format!("DateTime({d:?})");
    }
    match v {
        Value::List(l) => {
            let items: Vec<String> = l.read_recursive().iter().map(canon).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(d) => {
            let items: Vec<String> = d
                .read_recursive()
                .iter()
                .map(|(k, v)| format!("{}: {}", repr(k.value()), canon(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(o) => {
            let o = o.read_recursive();
            match (o.global(), o.args_slice()) {
                (Some(g), [a]) if g.is("decimal", "Decimal") => format!("Decimal({})", repr(a)),
                _ => repr(v),
            }
        }
        other => repr(other),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn encoder_is_byte_identical_to_cpython() {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("skipped: no CPython interpreter found");
        return;
    }
    let input = ENCODE_CORPUS.join("\n");
    for py in &pys {
        let out = py.run_ok(ENCODE_SCRIPT, &[], input.as_bytes());
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), ENCODE_CORPUS.len(), "{}", py.label());
        let (mut ok, mut err) = (0, 0);
        for (expr, line) in ENCODE_CORPUS.iter().zip(lines) {
            let (pickle_hex, expected) = line.split_once(' ').unwrap();
            let v = unpickle(&hex(pickle_hex)).unwrap();
            let got = encode(&v);
            match expected.strip_prefix("OK ") {
                Some(xml_hex) => {
                    let want = hex(xml_hex);
                    let got = got.unwrap_or_else(|e| panic!("{}: {expr}: {e}", py.label()));
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want),
                        "{}: {expr}",
                        py.label()
                    );
                    assert_eq!(got, want, "{}: {expr}", py.label());
                    ok += 1;
                }
                None => {
                    let want = expected.strip_prefix("ERR ").unwrap();
                    let e = got.expect_err(&format!("{}: {expr} must fail: {want}", py.label()));
                    assert_eq!(e.exception_line(), want, "{}: {expr}", py.label());
                    err += 1;
                }
            }
        }
        assert!(ok > 40 && err > 10, "{ok} {err}");
    }
}

const DECODE_SCRIPT: &str = r#"
import sys, pickle, xmlrpc.client as x
for line in sys.stdin.read().splitlines():
    data = bytes.fromhex(line)
    try:
        (obj,), method = x.loads(data.decode('utf-8'))
        out = 'OK ' + pickle.dumps(obj, 4).hex()
    except Exception as e:
        out = 'ERR %s.%s: %s' % (type(e).__module__, type(e).__qualname__, e)
    print(out)
"#;

fn decode_corpus() -> Vec<Vec<u8>> {
    let v = |s: &str| format!("<params><param><value>{s}</value></param></params>").into_bytes();
    let mut c: Vec<Vec<u8>> = vec![
        v("<nil/>"),
        v("<ex:nil/>"),
        v("<boolean>1</boolean>"),
        v("<boolean>0</boolean>"),
        v("<boolean>2</boolean>"),
        v("<int>7</int>"),
        v("<i4> -12 </i4>"),
        v("<i8>1099511627776</i8>"),
        v("<int>123456789012345678901234567890</int>"),
        v("<int>1_000</int>"),
        v("<int>x</int>"),
        v("<int></int>"),
        v("<double>2.25</double>"),
        v("<double>inf</double>"),
        v("<double>-1e300</double>"),
        v("<double>1_0.5</double>"),
        v("<double>abc</double>"),
        v("<bigdecimal>1.50</bigdecimal>"),
        v("plain text"),
        v(""),
        v("<string>a &amp; b &lt; c &gt; &quot; &apos; &#65;&#x42;</string>"),
        v("<string>line\r\nend\rx</string>"),
        v("<string>&#13;</string>"),
        v("<string><![CDATA[<raw> & ]]></string>"),
        v("<string>caf\u{e9} \u{1f600}</string>"),
        v("<string>a\u{0}</string>"),
        v("<string>&#0;</string>"),
        v("<string>&foo;</string>"),
        v("<string>]]></string>"),
        v("<base64>aGnl</base64>"),
        v("<base64>\naGk=\n</base64>"),
        v("<base64>aGk</base64>"),
        v("<base64></base64>"),
        v("<dateTime.iso8601> 20200101T00:00:00 </dateTime.iso8601>"),
        v("<array><data><value><int>1</int></value><value>s</value></data></array>"),
        v("<array><data></data></array>"),
        v("<struct><member><name>a</name><value><int>1</int></value></member><member><name>b&amp;</name><value><array><data/></array></value></member></struct>"),
        v("<struct><member><name>a</name></member></struct>"),
        v("<struct><member><value><array><data/></array></value><value>x</value></member></struct>"),
        v("<foo/>"),
        v("<array><data>"),
        b"<params><param><value>1</value></param><param><value>2</value></param></params>".to_vec(),
        b"<params></params>".to_vec(),
        b"<params><param><value><array><data></data></array></value></param>".to_vec(),
        b"<params><param><value>1</value></param></params><x/>".to_vec(),
        b"<params><param><value>1</value></param></params>junk".to_vec(),
        b"<?xml version='1.0'?>\n<methodResponse><params><param><value>1</value></param></params></methodResponse>\n".to_vec(),
        b"<!-- c --><params><param><value><?pi x?>1</value></param></params>".to_vec(),
        b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int></value></member><member><name>faultString</name><value>s</value></member></struct></value></fault></methodResponse>".to_vec(),
        b"".to_vec(),
        b"   ".to_vec(),
        b"not xml".to_vec(),
        b"<params><param><value><strin".to_vec(),
        b"<params><param></value></param></params>".to_vec(),
        b"<a></b>".to_vec(),
        b"\xff".to_vec(),
        b"<params>\xc3</params>".to_vec(),
        b"<params>\xe5\x80</params>".to_vec(),
        b"<value>1</value>".to_vec(),
    ];
    let nested = format!(
        "<params><param><value>{}{}</value></param></params>",
        "<array><data><value>".repeat(50),
        "</value></data></array>".repeat(50)
    );
    c.push(nested.into_bytes());
    c
}

#[test]
fn decoder_agrees_with_cpython() {
    let pys = pythons();
    if pys.is_empty() {
        eprintln!("skipped: no CPython interpreter found");
        return;
    }
    let corpus = decode_corpus();
    let input: Vec<String> = corpus
        .iter()
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let input = input.join("\n") + "\n";
    for py in &pys {
        let out = String::from_utf8(py.run_ok(DECODE_SCRIPT, &[], input.as_bytes())).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), corpus.len());
        for (data, line) in corpus.iter().zip(lines) {
            let what = String::from_utf8_lossy(data);
            let got = decode(data);
            if let Some(p) = line.strip_prefix("OK ") {
                let want = unpickle(&hex(p)).unwrap();
                let got = got.unwrap_or_else(|e| panic!("{}: {what:?}: {e}", py.label()));
                assert_eq!(canon(&got), canon(&want), "{}: {what:?}", py.label());
            } else {
                let want = line.strip_prefix("ERR ").unwrap();
                let e = got.expect_err(&format!("{}: {what:?} must fail: {want}", py.label()));
                let line = e.exception_line();
                let ty = |s: &str| {
                    s.split(':')
                        .next()
                        .unwrap()
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .to_string()
                };
                assert_eq!(
                    ty(&line),
                    ty(want),
                    "{}: {what:?}: {line} vs {want}",
                    py.label()
                );
                // Texts CPython's users see verbatim must match too.
                if !want.contains("ExpatError") && !want.contains("Fault") {
                    let msg = |s: &str| s.split_once(": ").map(|x| x.1.to_string());
                    assert_eq!(msg(&line), msg(want), "{}: {what:?}", py.label());
                }
            }
        }
    }
}
