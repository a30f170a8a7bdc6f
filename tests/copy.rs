//! `esark copy`: cluster to cluster without files, checked with `verify`
//! against an archive dumped from the same source, and with plain reads.

use crate::util::fixture::Fixture;
use crate::util::restore_support::{
    all_index_names, assert_same_stored, copy_cmd, docs_of, dump_archive, json_report,
    report_index, target_cluster, verify_cmd,
};

#[test]
fn copy_between_clusters_then_verify_is_clean() {
    let Some(target) = target_cluster("copy") else {
        return;
    };
    let f = Fixture::seed("copy", 400);
    let run = copy_cmd(&f.cluster, &target)
        .args(["--match", &f.match_all()])
        .args(["--slices", "2", "--page-size", "100", "--json"])
        // Many small bulks, several in flight.
        .args(["--bulk-docs", "37", "--concurrency", "3"])
        .run();
    run.assert_success();
    let report = json_report(&run);
    assert_eq!(report["status"], "ok", "{report}");
    for name in f.open_indices() {
        let entry = report_index(&report, name);
        assert_eq!(entry["status"], "restored", "{entry}");
        assert_eq!(entry["target"], name, "{entry}");
        assert_eq!(entry["written"], entry["archive_docs"], "{entry}");
        assert_same_stored(
            &docs_of(&f.cluster, name),
            &docs_of(&target, name),
            &format!("{name}: source vs target"),
        );
        assert_eq!(target.mappings(name), f.cluster.mappings(name), "{name}");
        assert_eq!(target.aliases(name), f.cluster.aliases(name), "{name}");
    }
    let mut expected: Vec<String> = f.open_indices().iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        all_index_names(&target),
        expected,
        "closed index not copied"
    );

    // Same modes as restore: copying again fails by default (the indices
    // exist), skip-existing passes and writes nothing.
    let again = copy_cmd(&f.cluster, &target)
        .args(["--match", &f.match_all()])
        .run();
    assert_eq!(again.code, Some(1), "expected exit 1\n{again}");
    let skip = copy_cmd(&f.cluster, &target)
        .args([
            "--match",
            &f.match_all(),
            "--mode",
            "skip-existing",
            "--json",
        ])
        .run();
    skip.assert_success();
    let report = json_report(&skip);
    for name in f.open_indices() {
        assert_eq!(report_index(&report, name)["status"], "skipped", "{report}");
    }

    // An archive of the same source verifies against the copy (after the
    // skip-existing run, which changed nothing).
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    dump_archive(&f.cluster, &archive, &f.match_all());
    verify_cmd(&archive, &target).run().assert_success();
}

/// A `--match` that selects nothing is an error naming what it was matched
/// against (as for dump and restore), not a successful copy of nothing.
#[test]
fn copy_of_a_selection_that_picks_nothing_is_refused() {
    let Some(target) = target_cluster("copy-none") else {
        return;
    };
    let f = Fixture::seed("copy-none", 20);
    let pattern = format!("{}-no-such-index-.*", f.cluster.prefix());
    let run = copy_cmd(&f.cluster, &target)
        .args(["--match", &pattern])
        .run();
    assert_eq!(run.code, Some(1), "expected exit 1\n{run}");
    let line = crate::util::check::assert_one_error_line(&run);
    assert!(
        line.contains(&format!("--match '{pattern}' selects none of the")),
        "{line}"
    );
    assert!(
        all_index_names(&target).is_empty(),
        "nothing may be written"
    );
}
