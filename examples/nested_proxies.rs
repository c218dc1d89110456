//! What propagates through manager proxies and what does not (the
//! Q&A "why was my list in a Namespace not changed?"). A child process
//! changes a Namespace, a list and a dict in four ways each:
//!
//! * assigning a new value to the managed object: **propagates**;
//! * changing a plain list *inside* it, without assigning it back: **lost**
//!   (the child only changed its own copy);
//! * changing that copy and assigning it back: **propagates**;
//! * changing a *managed* list nested inside it (a proxy): **propagates**.
//!
//! Prints what the Python program of the answer prints:
//!
//! ```text
//! before
//! Namespace(x=1, y=[1], z=[1])
//! [1, [1], [1], <ListProxy object, typeid 'list' at 0x…>]
//! [1]
//! {0: 1, 1: [1], 2: [1], 3: <ListProxy object, typeid 'list' at 0x…>}
//! [1]
//! after
//! Namespace(x=2, y=[1], z=[2])
//! [2, [1], [2], <ListProxy object, typeid 'list' at 0x…>]
//! [2]
//! {0: 2, 1: [1], 2: [2], 3: <ListProxy object, typeid 'list' at 0x…>}
//! [2]
//! ```

use mpmanager_client::{DictProxy, ListProxy, Manager, Namespace, Proxy, Result};
use mpmanager_pickle::{from_value, repr, Value};

const KEY: &[u8] = b"nested proxies";

fn int(v: Value) -> i64 {
    v.as_i64().expect("an int")
}

fn ints(v: Value) -> Vec<i64> {
    from_value(&v).expect("a list of ints")
}

/// `f(ns, ls, di)` of the answer, in a child process.
fn f(ns: &Namespace, ls: &ListProxy<Value>, di: &DictProxy<i64, Value>) -> Result<()> {
    // ns.x += 1
    let x: i64 = ns.get("x")?;
    ns.set("x", &(x + 1))?;
    // ns.y[0] += 1: changes a copy only
    let mut y: Vec<i64> = ns.get("y")?;
    y[0] += 1;
    // ns_z = ns.z; ns_z[0] += 1; ns.z = ns_z
    let mut z: Vec<i64> = ns.get("z")?;
    z[0] += 1;
    ns.set("z", &z)?;

    // ls[0] += 1
    ls.set(0, &Value::Int(int(ls.get(0)?) + 1))?;
    // ls[1][0] += 1: unmanaged, not assigned back
    let mut l1 = ints(ls.get(1)?);
    l1[0] += 1;
    // ls_2 = ls[2]; ls_2[0] += 1; ls[2] = ls_2
    let mut l2 = ints(ls.get(2)?);
    l2[0] += 1;
    ls.set(2, &mpmanager_pickle::to_value(&l2).expect("ints"))?;
    // ls[3][0] += 1: managed, direct manipulation through the nested proxy
    let l3: ListProxy<i64> = ListProxy::from_proxy(
        ls.proxy()
            .call("__getitem__", vec![Value::Int(3)], vec![])?
            .into_proxy()?,
    );
    l3.set(0, &(l3.get(0)? + 1))?;

    // The same on the dict.
    di.insert(&0, &Value::Int(int(di.get_item(&0)?) + 1))?;
    let mut d1 = ints(di.get_item(&1)?);
    d1[0] += 1;
    let mut d2 = ints(di.get_item(&2)?);
    d2[0] += 1;
    di.insert(&2, &mpmanager_pickle::to_value(&d2).expect("ints"))?;
    let d3: ListProxy<i64> = ListProxy::from_proxy(
        di.proxy()
            .call("__getitem__", vec![Value::Int(3)], vec![])?
            .into_proxy()?,
    );
    d3.set(0, &(d3.get(0)? + 1))?;
    let _ = (y, l1, d1); // the copies the child changed in vain
    Ok(())
}

fn child((ns, ls, di, key): (String, String, String, Vec<u8>)) -> std::result::Result<(), String> {
    let open = |s: &str| Proxy::from_proxy_string(s, &key).map_err(|e| e.to_string());
    let ns = Namespace::from_proxy(open(&ns)?);
    let ls = ListProxy::from_proxy(open(&ls)?);
    let di = DictProxy::from_proxy(open(&di)?);
    f(&ns, &ls, &di).map_err(|e| e.to_string())
}

fn show(
    title: &str,
    ns: &Namespace,
    ls: &ListProxy<Value>,
    di: &DictProxy<i64, Value>,
) -> Result<()> {
    println!("{title}");
    println!("{ns}");
    println!("{ls}");
    println!("{}", repr(&ls.get(2)?));
    println!("{di}");
    println!("{}", repr(&di.get_item(&2)?));
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    procspawn::init();
    let manager = Manager::start_in_background(KEY)?;
    let ns = manager.namespace()?;
    ns.set("x", &1)?;
    ns.set("y", &vec![1])?;
    ns.set("z", &vec![1])?;
    let one = || Value::list(vec![Value::Int(1)]);
    let ls: ListProxy<Value> = manager.list(&[
        Value::Int(1),
        one(),
        one(),
        manager.list(&[1])?.proxy().to_value(),
    ])?;
    let di: DictProxy<i64, Value> = manager.dict()?;
    di.insert(&0, &Value::Int(1))?;
    di.insert(&1, &one())?;
    di.insert(&2, &one())?;
    di.insert(&3, &manager.list(&[1])?.proxy().to_value())?;

    show("before", &ns, &ls, &di)?;
    let args = (
        ns.proxy().to_proxy_string()?,
        ls.proxy().to_proxy_string()?,
        di.proxy().to_proxy_string()?,
        KEY.to_vec(),
    );
    procspawn::spawn(args, child).join()??;
    show("after", &ns, &ls, &di)?;
    Ok(())
}
