//! Host tests of the shell-output parsers behind the domain helpers.

use super::*;

#[test]
fn free_bytes_come_from_the_exact_free_line() {
    let mem =
        "Total: 1073741824 bytes\n[  3.250000] domain 2 (hello) destroyed\nFree: 52428800 bytes\nHeap: 1 MiB used";
    assert_eq!(parse_free_bytes(mem), Some(52_428_800));
    assert_eq!(parse_free_bytes("Free: 50 MiB"), None);
    assert_eq!(parse_free_bytes("[  1.000000] Free: 12 bytes"), None, "a log line is not mem's output");
}

#[test]
fn created_domain_is_one_line_naming_the_domain() {
    assert_eq!(parse_created("Created domain 7 (linux1)", "linux1"), Some(7));
    assert_eq!(parse_created("[  9.000000] domain 7 (linux1) created\nCreated domain 7 (linux1)\n", "linux1"), Some(7));
    assert_eq!(parse_created("Created domain 7 (linux)", "linux1"), None, "another name");
    assert_eq!(parse_created("Created domain 7 (linux1)\nCreated domain 8 (linux1)", "linux1"), None);
    assert_eq!(parse_created("error: no config linux1", "linux1"), None);
}

#[test]
fn list_rows_skip_the_header_and_log_lines() {
    let table = "NAME  ID  MEM(MiB)  VCPUS  STATE  TIME(s)\nDomain-0  0  64  2  r-----  12.5\n[  4.000000] domain 3 (demo) created\ndemo  3  32  1  -b----  0.1\nbroken  x  32  1  -b----  0.1";
    let rows = parse_list(table);
    assert_eq!(rows.iter().map(|row| (row.name.as_str(), row.id)).collect::<Vec<_>>(), [("Domain-0", 0), ("demo", 3)]);
    assert_eq!((rows[1].memory_mib, rows[1].vcpus, rows[1].state.as_str()), (32, 1, "-b----"));
    assert!(parse_list("demo  3  32  1  running  0.1").is_empty(), "the state must be xl's six letters");
}

#[test]
fn log_line_rest_is_after_the_prefix() {
    let seen = "basalt> \n[ 12.345000] domain 4 (linux) restarted as domain 5\n";
    assert_eq!(rest_after(seen, "domain 4 (linux) restarted as domain").as_deref(), Some("5"));
    assert_eq!(rest_after(seen, "domain 4 (linux1) restarted as domain"), None);
}

#[test]
fn missing_test_image_says_how_to_build_it() {
    let missing = Path::new("/nonexistent/basalt-test.img");
    let error = ensure_test_image(missing, "or point BASALT_TEST_IMAGE at one").err().map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "test image /nonexistent/basalt-test.img does not exist: run `make test-image` first (or point BASALT_TEST_IMAGE at one)"
        )
    );
    assert!(ensure_test_image(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")), "").is_ok());
}
