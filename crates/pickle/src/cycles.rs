//! Reclaiming reference cycles.
//!
//! Containers are reference counted ([`Arc`]), so a value that contains
//! itself — which pickles can express, and which this crate must keep — is
//! never freed by counting alone. A server that decodes such pickles from
//! clients would leak a little memory with every one of them.
//!
//! This module is the remedy, a small *trial-deletion* collector (the scheme
//! CPython's `gc` uses): starting from *candidates* (containers the decoder
//! saw referenced more than once, the only way a decoded graph can become
//! cyclic), it counts, for every container reachable from them, how many of
//! its references come from inside that subgraph. Containers with
//! references from outside are alive, and so is everything they reach; the
//! rest is unreachable garbage held only by its own cycles, and is cleared,
//! which lets reference counting free it.
//!
//! Collection runs by itself when the number of candidates passes a
//! threshold that doubles with the survivors (so its cost is amortized over
//! the decoding that produced them), and on demand with [`collect_cycles`].
//!
//! Values built by hand in Rust can form cycles too; register them with
//! [`track`] if they may be dropped while cyclic.
//!
//! Concurrency: counts are read twice and the collection is abandoned if
//! anything changed in between, so a value moved between threads while the
//! collector looks is left alone (and looked at again next time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::value::{Dict, List, Object, Set, Value};

enum Candidate {
    List(Weak<RwLock<List>>),
    Dict(Weak<RwLock<Dict>>),
    Set(Weak<RwLock<Set>>),
    Object(Weak<RwLock<Object>>),
}

impl Candidate {
    fn upgrade(&self) -> Option<Value> {
        Some(match self {
            Candidate::List(w) => Value::List(w.upgrade()?),
            Candidate::Dict(w) => Value::Dict(w.upgrade()?),
            Candidate::Set(w) => Value::Set(w.upgrade()?),
            Candidate::Object(w) => Value::Object(w.upgrade()?),
        })
    }

    fn of(v: &Value) -> Option<Candidate> {
        Some(match v {
            Value::List(a) => Candidate::List(Arc::downgrade(a)),
            Value::Dict(a) => Candidate::Dict(Arc::downgrade(a)),
            Value::Set(a) => Candidate::Set(Arc::downgrade(a)),
            Value::Object(a) => Candidate::Object(Arc::downgrade(a)),
            _ => return None,
        })
    }
}

static CANDIDATES: Mutex<Vec<Candidate>> = Mutex::new(Vec::new());
static COLLECTING: Mutex<()> = Mutex::new(());
const MIN_THRESHOLD: usize = 1024;
static THRESHOLD: AtomicUsize = AtomicUsize::new(MIN_THRESHOLD);

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleStats {
    /// Containers examined (reachable from the candidates).
    pub examined: usize,
    /// Unreachable containers that were cleared.
    pub cleared: usize,
    /// True if the collection was abandoned because counts changed while
    /// it ran (another thread was using the values); its candidates are
    /// kept for the next one.
    pub abandoned: bool,
}

/// Registers `v` as a possible member of a reference cycle, so that it is
/// reclaimed by [`collect_cycles`] if it becomes unreachable. Only mutable
/// containers (list, dict, set, opaque object) can close a cycle; other
/// values are ignored. May run a collection (amortized).
///
/// ```
/// use mpmanager_pickle::{cycles, Value};
/// let l = Value::list(vec![]);
/// if let Value::List(a) = &l { a.write().push(l.clone()); }  // l contains itself
/// cycles::track(&l);
/// drop(l);
/// assert!(cycles::collect_cycles().cleared >= 1);
/// ```
pub fn track(v: &Value) {
    let Some(c) = Candidate::of(v) else { return };
    let len = {
        let mut cands = CANDIDATES.lock();
        cands.push(c);
        cands.len()
    };
    if len >= THRESHOLD.load(Ordering::Relaxed) {
        collect_cycles();
    }
}

/// Frees every tracked container that is only kept alive by reference
/// cycles. Safe to call at any time from any thread.
pub fn collect_cycles() -> CycleStats {
    let _one_at_a_time = COLLECTING.lock();
    let candidates = std::mem::take(&mut *CANDIDATES.lock());
    let mut graph = Graph::default();
    for c in &candidates {
        if let Some(v) = c.upgrade() {
            graph.add(v);
        }
    }
    graph.explore();
    let counts = graph.external_counts();
    let live = graph.live(&counts);
    // Read the counts again: if another thread took or dropped a reference
    // meanwhile, the picture may be wrong; leave everything for next time.
    let stats_examined = graph.nodes.len();
    if graph.external_counts() != counts {
        let mut cands = CANDIDATES.lock();
        cands.extend(candidates.into_iter().filter(|c| c.upgrade().is_some()));
        return CycleStats {
            examined: stats_examined,
            cleared: 0,
            abandoned: true,
        };
    }
    let mut cleared = 0;
    let mut bag: Vec<Value> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if live[i] {
            continue;
        }
        if clear_into(&node.value, &mut bag) {
            cleared += 1;
        }
    }
    // Survivors stay candidates: they may become garbage later.
    let survivors: Vec<Candidate> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| live[*i] && n.root)
        .filter_map(|(_, n)| Candidate::of(&n.value))
        .collect();
    let survivor_count = survivors.len();
    CANDIDATES.lock().extend(survivors);
    THRESHOLD.store((survivor_count * 2).max(MIN_THRESHOLD), Ordering::Relaxed);
    drop(graph);
    drop(bag); // frees the garbage, now acyclic
    CycleStats {
        examined: stats_examined,
        cleared,
        abandoned: false,
    }
}

/// Moves a garbage container's contents into `bag` (dropped later, outside
/// any lock). Returns true if it was a mutable container.
fn clear_into(v: &Value, bag: &mut Vec<Value>) -> bool {
    match v {
        Value::List(a) => bag.extend(std::mem::take(&mut a.write().items)),
        Value::Dict(a) => {
            for (k, x) in std::mem::take(&mut a.write().items) {
                bag.push(k.into_value());
                bag.push(x);
            }
        }
        Value::Set(a) => bag.extend(
            std::mem::take(&mut a.write().items)
                .into_iter()
                .map(|k| k.into_value()),
        ),
        Value::Object(a) => {
            let mut o = a.write();
            bag.append(&mut o.list_items);
            for (k, x) in std::mem::take(&mut o.dict_items) {
                bag.push(k);
                bag.push(x);
            }
            if let Some(s) = o.state.take() {
                bag.push(s);
            }
            if let Some(k) = o.kwargs.take() {
                bag.push(k);
            }
            bag.push(std::mem::replace(&mut o.args, Value::tuple(vec![])));
        }
        _ => return false,
    }
    true
}

struct Node {
    value: Value,
    root: bool,
    children: Vec<usize>,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    index: HashMap<usize, usize>,
}

impl Graph {
    /// Adds a root; returns its index.
    fn add(&mut self, v: Value) -> usize {
        self.node(&v, true)
    }

    fn node(&mut self, v: &Value, root: bool) -> usize {
        let id = v.identity().expect("containers have an identity");
        if let Some(&i) = self.index.get(&id) {
            if root {
                self.nodes[i].root = true;
            }
            return i;
        }
        let i = self.nodes.len();
        self.index.insert(id, i);
        self.nodes.push(Node {
            value: v.clone(),
            root,
            children: Vec::new(),
        });
        i
    }

    /// Follows every container reachable from the roots, recording edges
    /// (one per reference, so duplicates count).
    fn explore(&mut self) {
        let mut next = 0;
        while next < self.nodes.len() {
            let v = self.nodes[next].value.clone();
            let kids: Vec<usize> = v
                .children()
                .iter()
                .filter(|c| c.holds_values())
                .map(|c| self.node(c, false))
                .collect();
            drop(v);
            self.nodes[next].children = kids;
            next += 1;
        }
    }

    /// For each node: references from outside the subgraph (its strong
    /// count, less the collector's own, less the edges inside).
    fn external_counts(&self) -> Vec<isize> {
        let mut internal = vec![0isize; self.nodes.len()];
        for n in &self.nodes {
            for &c in &n.children {
                internal[c] += 1;
            }
        }
        self.nodes
            .iter()
            .zip(internal)
            .map(|(n, inside)| n.value.strong_count().unwrap_or(0) as isize - 1 - inside)
            .collect()
    }

    /// Nodes referenced from outside, and everything they reach.
    fn live(&self, external: &[isize]) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut work: Vec<usize> = (0..self.nodes.len()).filter(|&i| external[i] > 0).collect();
        for &i in &work {
            live[i] = true;
        }
        while let Some(i) = work.pop() {
            for &c in &self.nodes[i].children {
                if !live[c] {
                    live[c] = true;
                    work.push(c);
                }
            }
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_list() -> (Value, Weak<RwLock<List>>) {
        let l = Value::list(vec![Value::Int(1)]);
        let Value::List(a) = &l else { unreachable!() };
        a.write().push(l.clone());
        let w = Arc::downgrade(a);
        (l, w)
    }

    #[test]
    fn unreachable_self_containing_list_is_freed() {
        let (l, w) = self_list();
        track(&l);
        drop(l);
        assert!(w.upgrade().is_some(), "a cycle is not freed by counting");
        collect_cycles();
        assert!(w.upgrade().is_none());
    }

    #[test]
    fn reachable_cycles_are_kept_intact() {
        let (l, w) = self_list();
        track(&l);
        // Also reachable only through a tuple held outside.
        let (m, wm) = self_list();
        track(&m);
        let holder = Value::tuple(vec![m]);
        collect_cycles();
        let a = w.upgrade().expect("still referenced");
        assert_eq!(a.read().len(), 2);
        assert_eq!(wm.upgrade().expect("held by the tuple").read().len(), 2);
        drop((l, holder, a));
        collect_cycles();
        assert!(w.upgrade().is_none() && wm.upgrade().is_none());
    }

    #[test]
    fn cycles_through_dicts_tuples_and_objects_are_freed() {
        // d = {}; t = (d,); d['t'] = t; o.state = {'d': d}; d['o'] = o
        let d = Value::dict(vec![]).unwrap();
        let t = Value::tuple(vec![d.clone()]);
        let o = Value::object(Object::reduce(Value::global("m", "C"), vec![]));
        let (Value::Dict(da), Value::Object(oa)) = (&d, &o) else {
            unreachable!()
        };
        da.write().insert(crate::Key::str("t"), t);
        oa.write().state = Some(Value::dict(vec![(Value::str("d"), d.clone())]).unwrap());
        da.write().insert(crate::Key::str("o"), o.clone());
        let (wd, wo) = (Arc::downgrade(da), Arc::downgrade(oa));
        track(&d);
        drop((d, o));
        collect_cycles();
        assert!(wd.upgrade().is_none() && wo.upgrade().is_none());
    }

    /// Found by the fuzzer: `DUP` makes a second reference without the
    /// memo (`]2a` appends a list to itself).
    #[test]
    fn cycles_made_with_dup_are_collected() {
        let v = crate::decode(b"\x80\x04]2a.").unwrap();
        let Value::List(a) = &v else { panic!("a list") };
        assert!(a.read()[0].is(&v), "the list contains itself");
        let w = Arc::downgrade(a);
        drop(v);
        collect_cycles();
        assert!(w.upgrade().is_none());
        // The failing-decode half is tests/integration/cycles_after_decode_error.rs
        // (its own process, so no other test shares the candidate list).
    }

    #[test]
    fn decoded_recursive_pickles_do_not_leak() {
        // pickle.dumps(l) for l = [1]; l.append(l), protocol 2 (the input the
        // fuzzer reported as a leak).
        let v = crate::decode(b"\x80\x02]q\x00(K\x01h\x00e.").unwrap();
        let Value::List(a) = &v else { panic!("a list") };
        let w = Arc::downgrade(a);
        drop(v);
        collect_cycles();
        assert!(w.upgrade().is_none());
    }
}
