//! The comparison the README publishes is what the code produces now.
//!
//! `sla-planner compare --out docs/results.md` writes the table, and its three tables are
//! copied into the README. Its `static:best`, oracle and `budget-at-start` runs are
//! searches (of a minute or more each for the first two); the planner's, Dynamo's and the
//! threshold rule's runs take seconds, so they are run again here and must match the
//! published rows cell for cell (all but "x oracle", which needs the oracle). A change to
//! the decisions of any of them fails here until the table is regenerated: the README
//! cannot go on showing numbers the code no longer gives.

mod common;

use std::collections::BTreeMap;

fn project_file(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Rows of the table of every policy on every run (ten cells), by (scenario, cold start,
/// policy): the cells but "x oracle".
fn policy_rows(markdown: &str) -> BTreeMap<(String, String, String), Vec<String>> {
    markdown
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario |"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() == 10)
        .map(|mut cells| {
            cells.remove(5);
            let key = (cells[0].clone(), cells[1].clone(), cells[2].clone());
            (key, cells.split_off(3))
        })
        .collect()
}

/// The tables of a markdown text: runs of lines that start with `|`.
fn tables(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in markdown.lines() {
        if line.starts_with('|') {
            current += line;
            current.push('\n');
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[test]
fn the_published_rows_of_the_quick_policies_are_what_they_do_now() {
    let published = policy_rows(&project_file("docs/results.md"));
    let out = common::run_stdout(&[
        "compare",
        "--policy",
        "planner",
        "--policy",
        "dynamo",
        "--policy",
        "threshold",
    ]);
    let now = policy_rows(&out);
    // Every shipped scenario (10) at both cold starts, planner and threshold everywhere,
    // Dynamo's planner where it sizes separate pools (not on aggregated workers).
    assert!(now.len() >= 50, "{} rows: {now:?}", now.len());
    for (key, cells) in &now {
        let Some(was) = published.get(key) else {
            panic!("{key:?} is not in docs/results.md: regenerate it with `sla-planner compare --out docs/results.md`");
        };
        assert_eq!(
            cells, was,
            "{key:?}: the run gives {cells:?}, docs/results.md says {was:?}; regenerate it with `sla-planner compare --out docs/results.md` and copy its tables into the README"
        );
    }
    // And the published table has no row of these policies that is no longer run.
    let quick = ["planner", "dynamo", "threshold"];
    for key in published.keys().filter(|k| quick.contains(&k.2.as_str())) {
        assert!(
            now.contains_key(key),
            "docs/results.md has {key:?}, no longer run"
        );
    }
}

#[test]
fn the_readme_shows_the_published_tables_as_they_are() {
    let results = tables(&project_file("docs/results.md"));
    assert_eq!(results.len(), 3, "every run, the standing, the warm-up");
    let readme = project_file("README.md");
    for table in &results {
        let header = table.lines().next().unwrap_or_default();
        assert!(
            readme.contains(table.as_str()),
            "the README's table under {header:?} is not docs/results.md's: copy it again"
        );
    }
}

#[test]
fn the_readmes_example_run_is_what_simulate_prints() {
    // The README's first example: `simulate --scenario sin-5-45`, every policy of the
    // scenario but the oracle (a search; its row is checked by hand when regenerated).
    let table = common::run_stdout(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--policy",
        "planner",
        "--policy",
        "static:2,2",
        "--policy",
        "static:4,5",
        "--policy",
        "dynamo",
        "--policy",
        "threshold",
    ]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| policy"))
        .collect();
    assert_eq!(rows.len(), 5, "{table}");
    let readme = project_file("README.md");
    for row in rows {
        assert!(
            readme.lines().any(|l| l == row),
            "the README's sin-5-45 example lacks {row:?}: run `sla-planner simulate --scenario sin-5-45` and copy its table"
        );
    }
}
