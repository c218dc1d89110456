//! Comparing a scenario's output against CPython's servers of several
//! versions (shared by the seed scenarios and the synchronisation-type
//! tests): outputs are split into `== section` blocks, and a line one
//! version's server prints differently may match another version's.

/// `Ok` if `out` equals `reference` (the same interpreter's run against
/// CPython's server), with one tolerance: where CPython's servers of
/// different versions print different lines (server-side messages and
/// reprs that changed between versions, e.g. `AttributeError: x` (≤3.10)
/// vs `AttributeError: 'Namespace' object has no attribute 'x'` (3.11+)),
/// one Rust server cannot follow every version, so a line is also accepted
/// if it is the line at the same position in another version's reference
/// output. Positions are counted within `== section` blocks (the n-th line
/// after the k-th occurrence of a header), so that a version printing more
/// lines elsewhere does not shift them; a section whose line count differs
/// from the reference's is compared strictly. Accepted lines are returned
/// as notes. Otherwise `Err` with a diff against `reference`.
pub fn compare(
    reference: &str,
    out: &str,
    all: &[(String, Result<String, String>)],
) -> Result<Vec<String>, String> {
    if out == reference {
        return Ok(Vec::new());
    }
    let strict = || Err(line_diff(reference, out));
    if out.ends_with('\n') != reference.ends_with('\n') {
        return strict();
    }
    let out_s = sections(out);
    let ref_s = sections(reference);
    if out_s.len() != ref_s.len()
        || out_s
            .iter()
            .zip(&ref_s)
            .any(|(o, r)| o.0 != r.0 || o.1.len() != r.1.len())
    {
        return strict();
    }
    let others: Vec<(&str, Vec<Section>)> = all
        .iter()
        .filter_map(|(label, r)| r.as_ref().ok().map(|r| (label.as_str(), sections(r))))
        .collect();
    let mut notes = Vec::new();
    for ((key, o_lines), (_, r_lines)) in out_s.iter().zip(&ref_s) {
        for (i, (o, r)) in o_lines.iter().zip(r_lines).enumerate() {
            if o == r {
                continue;
            }
            let like: Vec<&str> = others
                .iter()
                .filter(|(_, secs)| {
                    secs.iter().any(|(k, lines)| {
                        k == key && lines.len() == o_lines.len() && lines[i] == *o
                    })
                })
                .map(|(label, _)| *label)
                .collect();
            if like.is_empty() {
                return strict();
            }
            notes.push(format!(
                "in {:?}: {o:?} (as CPython {}'s server; this version prints {r:?})",
                key.0,
                like.join("/")
            ));
        }
    }
    Ok(notes)
}

/// `((header, occurrence), lines)`; lines before the first header go under `""`.
pub type Section<'a> = ((&'a str, usize), Vec<&'a str>);

pub fn sections(text: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = vec![(("", 0), Vec::new())];
    for line in text.lines() {
        if line.starts_with("== ") {
            let n = out.iter().filter(|((h, _), _)| *h == line).count();
            out.push(((line, n), Vec::new()));
        } else {
            out.last_mut().unwrap().1.push(line);
        }
    }
    out
}

/// A line diff (longest common subsequence), at most 60 changed lines shown.
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j, mut shown) = (0, 0, 0);
    let mut section = "";
    let mut last_section_shown = "";
    while (i < n || j < m) && shown < 60 {
        if i < n && j < m && a[i] == b[j] {
            if a[i].starts_with("== ") {
                section = a[i];
            }
            i += 1;
            j += 1;
            continue;
        }
        if section != last_section_shown && !section.is_empty() {
            out.push(format!("  {section}"));
            last_section_shown = section;
        }
        if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {:>4}: {}", i + 1, a[i]));
            i += 1;
        } else {
            out.push(format!("+ {:>4}: {}", j + 1, b[j]));
            j += 1;
        }
        shown += 1;
    }
    if i < n || j < m {
        out.push("  … (more differences)".into());
    }
    out.join("\n")
}
