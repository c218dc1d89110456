//! # mpmanager-derive
//!
//! The `#[shared_type]` attribute macro: put it on an `impl` block and the
//! type becomes a shared object that unmodified CPython clients call through
//! their `AutoProxy`, as they would a class registered with
//! `BaseManager.register('Maths', MathsClass)`.
//!
//! Use it through `mpmanager_objects::shared_type` (re-exported there, with
//! the full documentation and examples); this crate only holds the macro.
//!
//! ```
//! use mpmanager_objects::{shared_type, Registry, SharedType};
//!
//! #[derive(Default)]
//! struct Maths;
//!
//! #[shared_type]
//! impl Maths {
//!     fn add(&self, x: i64, y: i64) -> i64 { x + y }
//!     fn mul(&self, x: f64, y: f64) -> f64 { x * y }
//! }
//!
//! assert_eq!(Maths::EXPOSED, ["add", "mul"]);
//! let reg = Registry::new();
//! reg.register_type::<Maths>("Maths");
//! ```
//!
//! Mistakes are compile errors. A method taking `&mut self` (calls run
//! concurrently: use interior mutability):
//!
//! ```compile_fail
//! use mpmanager_objects::shared_type;
//! #[derive(Default)]
//! struct Counter(i64);
//! #[shared_type]
//! impl Counter {
//!     fn incr(&mut self) -> i64 { self.0 += 1; self.0 }
//! }
//! ```
//!
//! A borrowed parameter (arguments are converted into owned values):
//!
//! ```compile_fail
//! use mpmanager_objects::shared_type;
//! #[derive(Default)]
//! struct Greeter;
//! #[shared_type]
//! impl Greeter {
//!     fn hello(&self, name: &str) -> String { format!("hello {name}") }
//! }
//! ```
//!
//! An unknown option:
//!
//! ```compile_fail
//! use mpmanager_objects::shared_type;
//! #[derive(Default)]
//! struct A;
//! #[shared_type(name = "B", colour = "red")]
//! impl A {}
//! ```
//!
//! A parameter type that cannot be read from a Python value:
//!
//! ```compile_fail
//! use mpmanager_objects::shared_type;
//! #[derive(Default)]
//! struct A;
//! struct NotSerde;
//! #[shared_type]
//! impl A {
//!     fn f(&self, x: NotSerde) {}
//! }
//! ```
//!
//! The same type without the mistake compiles:
//!
//! ```
//! use mpmanager_objects::shared_type;
//! #[derive(Default)]
//! struct A;
//! #[shared_type(name = "B")]
//! impl A {
//!     fn f(&self, x: Option<i64>) -> i64 { x.unwrap_or(0) }
//! }
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, Lit, Meta,
    Pat, PathArguments, ReturnType, Token, Type,
};

/// Serves the `&self` methods of an `impl` block to Python clients.
///
/// See `mpmanager_objects::shared_type` for the rules and examples.
///
/// Options: `#[shared_type(name = "MathsClass", module = "__main__", crate
/// = "mpmanager_server::objects")]` (all optional). Method options:
/// `#[mpmanager(skip)]`, `#[mpmanager(name = "__len__")]`, and
/// `#[mpmanager(constructor)]` on an associated function returning `Self`
/// or `Result<Self, E>`.
#[proc_macro_attribute]
pub fn shared_type(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Where the generated code finds the objects crate: `mpmanager_objects`
/// if the calling crate depends on it, else `mpmanager_server::objects`
/// (the server crate re-exports it), else `mpmanager_objects` (and the
/// compiler says it is missing). Renamed dependencies are followed.
fn default_crate_path() -> syn::Path {
    use proc_macro_crate::{crate_name, FoundCrate};
    let ident = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
    match crate_name("mpmanager-objects") {
        // Inside the objects package: its tests and doctests are separate
        // crates that see it by name.
        Ok(FoundCrate::Itself) => return syn::parse_quote!(::mpmanager_objects),
        Ok(FoundCrate::Name(n)) => {
            let n = ident(&n);
            return syn::parse_quote!(::#n);
        }
        Err(_) => {}
    }
    match crate_name("mpmanager-server") {
        Ok(FoundCrate::Name(n)) => {
            let n = ident(&n);
            syn::parse_quote!(::#n::objects)
        }
        Ok(FoundCrate::Itself) => syn::parse_quote!(::mpmanager_server::objects),
        Err(_) => syn::parse_quote!(::mpmanager_objects),
    }
}

struct Options {
    name: Option<String>,
    module: Option<String>,
    krate: syn::Path,
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let mut o = Options {
        name: None,
        module: None,
        krate: default_crate_path(),
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    for m in metas {
        let Meta::NameValue(nv) = &m else {
            return Err(syn::Error::new(
                m.span(),
                "expected `name = \"…\"`, `module = \"…\"` or `crate = \"…\"`",
            ));
        };
        let value = lit_str(&nv.value)?;
        if nv.path.is_ident("name") {
            o.name = Some(value.value());
        } else if nv.path.is_ident("module") {
            o.module = Some(value.value());
        } else if nv.path.is_ident("crate") {
            o.krate = value.parse()?;
        } else {
            return Err(syn::Error::new(
                nv.path.span(),
                "unknown option: expected `name`, `module` or `crate`",
            ));
        }
    }
    Ok(o)
}

fn lit_str(e: &Expr) -> syn::Result<syn::LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new(e.span(), "expected a string literal")),
    }
}

#[derive(Default)]
struct MethodOptions {
    skip: bool,
    name: Option<String>,
    constructor: bool,
}

/// Reads and removes `#[mpmanager(...)]` attributes.
fn take_method_options(attrs: &mut Vec<Attribute>) -> syn::Result<MethodOptions> {
    let mut o = MethodOptions::default();
    let mut kept = Vec::new();
    for a in attrs.drain(..) {
        if !a.path().is_ident("mpmanager") {
            kept.push(a);
            continue;
        }
        a.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                o.skip = true;
                Ok(())
            } else if meta.path.is_ident("constructor") {
                o.constructor = true;
                Ok(())
            } else if meta.path.is_ident("name") {
                let s: syn::LitStr = meta.value()?.parse()?;
                o.name = Some(s.value());
                Ok(())
            } else {
                Err(meta.error("expected `skip`, `constructor` or `name = \"…\"`"))
            }
        })?;
    }
    *attrs = kept;
    Ok(o)
}

/// The last path segment's name and its first generic type argument.
fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let arg = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((seg.ident.to_string(), arg))
}

fn is_named(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|(n, _)| n == name)
}

/// True for `&CallContext` (the call's context, not a Python parameter).
fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_none() && is_named(&r.elem, "CallContext"))
}

enum Param {
    Context,
    Python {
        ident: syn::Ident,
        name: String,
        ty: Box<Type>,
        optional: bool,
    },
}

fn params(f: &ImplItemFn, skip_receiver: bool) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    for (i, a) in f.sig.inputs.iter().enumerate() {
        match a {
            FnArg::Receiver(_) if skip_receiver && i == 0 => {}
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(r.span(), "unexpected receiver"));
            }
            FnArg::Typed(pt) => {
                if is_context(&pt.ty) {
                    out.push(Param::Context);
                    continue;
                }
                let Pat::Ident(pi) = &*pt.pat else {
                    return Err(syn::Error::new(
                        pt.pat.span(),
                        "#[shared_type] parameters must be plain names (they are the Python keyword names)",
                    ));
                };
                let name = pi.ident.to_string();
                let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
                if let Type::Reference(r) = &*pt.ty {
                    return Err(syn::Error::new(
                        r.span(),
                        "#[shared_type] parameters must be owned types (String, Vec<T>, Value …) converted from the Python argument; only `&CallContext` may be a reference",
                    ));
                }
                out.push(Param::Python {
                    ident: format_ident!("__arg_{}", name),
                    name,
                    ty: pt.ty.clone(),
                    optional: is_named(&pt.ty, "Option"),
                });
            }
        }
    }
    // Only trailing Option<T> parameters get the default None (Python does
    // not allow a parameter without default after one with a default).
    let mut trailing = true;
    for p in out.iter_mut().rev() {
        if let Param::Python { optional, .. } = p {
            if !*optional {
                trailing = false;
            }
            *optional &= trailing;
        }
    }
    Ok(out)
}

/// Code binding the Python arguments of `params` and the call arguments.
fn bind_code(
    krate: &syn::Path,
    qualname: &str,
    params: &[Param],
) -> (TokenStream2, Vec<TokenStream2>) {
    let pr = quote!(#krate::__private);
    let specs: Vec<TokenStream2> = params
        .iter()
        .filter_map(|p| match p {
            Param::Python { name, optional, .. } => Some(if *optional {
                quote!((#name, ::core::option::Option::Some(#pr::Value::None)))
            } else {
                quote!((#name, ::core::option::Option::None))
            }),
            Param::Context => None,
        })
        .collect();
    let mut lets = Vec::new();
    let mut call_args = Vec::new();
    let mut i = 0usize;
    for p in params {
        match p {
            Param::Context => call_args.push(quote!(__cx)),
            Param::Python {
                ident, name, ty, ..
            } => {
                lets.push(quote_spanned! {ty.span()=>
                    let #ident: #ty = #pr::arg(&__bound[#i], #qualname, #name)?;
                });
                call_args.push(quote!(#ident));
                i += 1;
            }
        }
    }
    let code = quote! {
        let __bound = #krate::args::bind(#qualname, &[#(#specs),*], __args, __kwargs)?;
        #(#lets)*
    };
    (code, call_args)
}

/// How a method's return value becomes a reply.
fn return_code(
    krate: &syn::Path,
    qualname: &str,
    out: &ReturnType,
    call: TokenStream2,
) -> TokenStream2 {
    let pr = quote!(#krate::__private);
    let ok = |inner: Option<&Type>, v: TokenStream2| -> TokenStream2 {
        match inner {
            Some(t) if is_named(t, "Outcome") => quote!(::core::result::Result::Ok(#v)),
            Some(Type::Tuple(t)) if t.elems.is_empty() => {
                quote!({ let _ = #v; ::core::result::Result::Ok(#krate::Outcome::none()) })
            }
            _ => quote!(#pr::ret(&#v, #qualname)),
        }
    };
    match out {
        ReturnType::Default => {
            quote! {{ #call; ::core::result::Result::Ok(#krate::Outcome::none()) }}
        }
        ReturnType::Type(_, ty) => match last_segment(ty) {
            Some((n, inner)) if n == "Result" => {
                let okv = ok(inner, quote!(__v));
                quote! {
                    match #call {
                        ::core::result::Result::Ok(__v) => #okv,
                        ::core::result::Result::Err(__e) => ::core::result::Result::Err(#krate::CallError::from(__e)),
                    }
                }
            }
            _ => ok(Some(ty), call),
        },
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let opts = parse_options(attr)?;
    let mut imp: ItemImpl = syn::parse2(item)?;
    if let Some((_, path, _)) = &imp.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[shared_type] goes on an inherent impl block (`impl MyType { … }`), not a trait impl",
        ));
    }
    let krate = &opts.krate;
    let pr = quote!(#krate::__private);
    let self_ty = imp.self_ty.clone();
    let short = match &opts.name {
        Some(n) => n.clone(),
        None => match last_segment(&self_ty) {
            Some((n, _)) => n,
            None => {
                return Err(syn::Error::new(
                    self_ty.span(),
                    "cannot name this type: add #[shared_type(name = \"…\")]",
                ))
            }
        },
    };

    let mut arms = Vec::new();
    let mut exposed: Vec<String> = Vec::new();
    // Methods taking `&CallContext`: the ones that may wait (and watch for
    // cancellation through it).
    let mut blocking: Vec<String> = Vec::new();
    let mut constructor: Option<TokenStream2> = None;
    for it in imp.items.iter_mut() {
        let ImplItem::Fn(f) = it else { continue };
        let mo = take_method_options(&mut f.attrs)?;
        let rust_name = f.sig.ident.clone();
        let receiver = f.sig.receiver().cloned();
        if mo.constructor {
            if receiver.is_some() {
                return Err(syn::Error::new(
                    f.sig.span(),
                    "#[mpmanager(constructor)] goes on an associated function without `self` returning `Self` or `Result<Self, E>`",
                ));
            }
            if constructor.is_some() {
                return Err(syn::Error::new(
                    f.sig.span(),
                    "a second #[mpmanager(constructor)]",
                ));
            }
            let qualname = format!("{short}.__init__");
            let ps = params(f, false)?;
            if ps.iter().any(|p| matches!(p, Param::Context)) {
                return Err(syn::Error::new(
                    f.sig.span(),
                    "a constructor gets no &CallContext",
                ));
            }
            let (bind, call_args) = bind_code(krate, &qualname, &ps);
            let is_result = match &f.sig.output {
                ReturnType::Type(_, t) => is_named(t, "Result"),
                ReturnType::Default => false,
            };
            let make = if is_result {
                quote!(Self::#rust_name(#(#call_args),*).map_err(|__e| #pr::into_pyerr(__e)))
            } else {
                quote!(::core::result::Result::Ok(Self::#rust_name(#(#call_args),*)))
            };
            constructor = Some(quote! {
                #bind
                #make
            });
            continue;
        }
        let Some(receiver) = receiver else { continue };
        if mo.skip {
            continue;
        }
        let py_name = mo.name.unwrap_or_else(|| {
            let n = rust_name.to_string();
            n.strip_prefix("r#").unwrap_or(&n).to_string()
        });
        if py_name.starts_with('_') && f.sig.ident.to_string().starts_with('_') {
            // CPython's public_methods() leaves out names starting with '_';
            // an explicit #[mpmanager(name = "__len__")] is exposed.
            continue;
        }
        if receiver.reference.is_none() || receiver.mutability.is_some() {
            return Err(syn::Error::new(
                receiver.span(),
                "#[shared_type] methods take `&self` (calls from many clients run concurrently): keep mutable state behind a Mutex, RwLock or atomics, or mark the method #[mpmanager(skip)]",
            ));
        }
        if !f.sig.generics.params.is_empty() || f.sig.asyncness.is_some() {
            return Err(syn::Error::new(
                f.sig.span(),
                "#[shared_type] methods cannot be generic or async (mark it #[mpmanager(skip)])",
            ));
        }
        if exposed.contains(&py_name) {
            return Err(syn::Error::new(
                f.sig.ident.span(),
                format!("two methods are exposed as '{py_name}'"),
            ));
        }
        let qualname = format!("{short}.{py_name}");
        let ps = params(f, true)?;
        if ps.iter().any(|p| matches!(p, Param::Context)) {
            blocking.push(py_name.clone());
        }
        let (bind, call_args) = bind_code(krate, &qualname, &ps);
        let call = quote!(Self::#rust_name(self, #(#call_args),*));
        let ret = return_code(krate, &qualname, &f.sig.output, call);
        arms.push(quote! {
            #py_name => {
                #bind
                #ret
            }
        });
        exposed.push(py_name);
    }
    // CPython's public_methods() lists dir(obj): sorted names.
    let mut sorted = exposed.clone();
    sorted.sort();

    let module = match &opts.module {
        Some(m) => quote!(#m),
        None => quote!(::core::module_path!()),
    };
    let construct = match constructor {
        Some(body) => quote! {
            fn construct(
                __args: &[#pr::Value],
                __kwargs: &#krate::Kwargs,
            ) -> ::core::result::Result<Self, #pr::PyErr> {
                #body
            }
        },
        None => quote! {
            fn construct(
                __args: &[#pr::Value],
                __kwargs: &#krate::Kwargs,
            ) -> ::core::result::Result<Self, #pr::PyErr> {
                #[allow(unused_imports)]
                use #pr::{ConstructDefault as _, ConstructNone as _};
                (&&#pr::Probe::<Self>(::core::marker::PhantomData))
                    .__mpm_construct(#short, __args, __kwargs)
            }
        },
    };
    let (impl_generics, _, where_clause) = imp.generics.split_for_impl();
    let span = Span::call_site();
    let out = quote_spanned! {span=>
        #imp

        impl #impl_generics #krate::SharedType for #self_ty #where_clause {
            const EXPOSED: &'static [&'static str] = &[#(#sorted),*];
            const NAME: &'static str = #short;

            fn python_class() -> &'static str {
                static NAME: ::std::sync::OnceLock<::std::string::String> = ::std::sync::OnceLock::new();
                NAME.get_or_init(|| #pr::class_path(#module, #short))
            }

            #construct
        }

        impl #impl_generics #krate::Referent for #self_ty #where_clause {
            fn class_name(&self) -> &str {
                <Self as #krate::SharedType>::python_class()
            }

            #[allow(unused_variables, clippy::needless_borrow)]
            fn call(
                &self,
                __cx: &#krate::CallContext,
                __method: &str,
                __args: &[#pr::Value],
                __kwargs: &#krate::Kwargs,
            ) -> ::core::result::Result<#krate::Outcome, #krate::CallError> {
                match __method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#krate::CallError::Python(
                        #krate::args::no_attribute(#krate::Referent::class_name(self), __method),
                    )),
                }
            }

            fn repr(&self) -> ::core::result::Result<::std::string::String, #pr::PyErr> {
                ::core::result::Result::Ok(#pr::default_repr(self))
            }

            fn may_block(&self, __method: &str) -> bool {
                [#(#blocking),*].contains(&__method)
            }

            fn get_value(&self) -> ::core::result::Result<#pr::Value, #pr::PyErr> {
                #[allow(unused_imports)]
                use #pr::{GetValueSerialize as _, GetValueUnpicklable as _};
                (&&#pr::Probe::<Self>(::core::marker::PhantomData)).__mpm_get_value(self)
            }
        }
    };
    Ok(out)
}
