//! Benchmark output: one aligned markdown table, as `make bench` prints it (and as the
//! README and issue notes quote it).

/// Prints `rows` (label, value) under a `| what | value |` header, columns aligned.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0).max("what".len());
    let value_width = rows.iter().map(|(_, value)| value.len()).max().unwrap_or(0).max("value".len());
    println!("| {:width$} | {:value_width$} |", "what", "value");
    println!("|{}|{}|", "-".repeat(width + 2), "-".repeat(value_width + 2));
    for (label, value) in rows {
        println!("| {label:width$} | {value:value_width$} |");
    }
}
