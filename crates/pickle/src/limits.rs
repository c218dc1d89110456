//! CPython's limits that this crate mirrors, each defined once: the
//! decoder, the encoder, comparisons, hashes and `repr` all read them
//! here.

/// The deepest nesting of containers and objects that is decoded, encoded,
/// compared, hashed or shown by `repr`: CPython's default recursion limit
/// (`sys.getrecursionlimit()`), past which it raises `RecursionError`.
///
/// ```
/// assert_eq!(mpmanager_pickle::limits::MAX_DEPTH, 1000);
/// assert_eq!(mpmanager_pickle::DecodeOptions::default().max_depth, mpmanager_pickle::limits::MAX_DEPTH);
/// ```
pub const MAX_DEPTH: usize = 1000;

/// CPython's default `sys.get_int_max_str_digits()` (3.11+): the most
/// decimal digits an `int` may have in text (the decoder's protocol-0
/// integers, `repr`), and the most a `Decimal` coefficient or a `Fraction`
/// may have and still get exact numeric semantics (arithmetic on longer
/// numbers takes quadratic time).
pub const INT_MAX_STR_DIGITS: usize = 4300;
