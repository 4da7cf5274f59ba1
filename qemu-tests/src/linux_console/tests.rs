//! Host tests of the Linux shell's command framing.

use super::*;

#[test]
fn typed_line_does_not_contain_its_markers() {
    let (line, begin, end) = framed_command_line(7, "uname -r");
    assert_eq!(line, "echo \"<\"\"<7\"; uname -r; echo \"7>\"\">\"");
    assert_eq!((begin.as_str(), end.as_str()), ("<<7", "7>>"));
    // The shell's echo of the line must not be mistaken for the markers it prints.
    assert!(!line.contains(&begin) && !line.contains(&end));
}

#[test]
fn status_is_the_last_line() {
    let lines = vec!["67108864".to_owned(), "status=0".to_owned()];
    assert_eq!(split_status(lines), Some((0, vec!["67108864".to_owned()])));
    assert_eq!(split_status(vec!["dd: error".to_owned(), "status=1".to_owned()]).map(|(status, _)| status), Some(1));
    assert_eq!(split_status(vec!["status=0".to_owned(), "late".to_owned()]), None);
    assert_eq!(split_status(Vec::new()), None);
}
