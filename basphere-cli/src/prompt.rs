//! Prompts on a terminal, in the original's style (`? ` prefix, menus numbered from 1).

use std::io::{BufRead, Write};

fn ask(question: &str) -> Option<String> {
    eprint!("? {question} ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// Yes or no; only `y`/`Y` (or Enter when the default is yes) is yes.
pub fn confirm(question: &str, default_yes: bool) -> bool {
    let hint = if default_yes { "[Y/n]" } else { "[y/N]" };
    match ask(&format!("{question} {hint}")) {
        Some(answer) if answer.is_empty() => default_yes,
        Some(answer) => answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes"),
        None => false,
    }
}

/// Free text with an optional default; loops until `valid` accepts it.
pub fn input(question: &str, default: Option<&str>, valid: impl Fn(&str) -> Result<(), String>) -> Option<String> {
    loop {
        let shown = match default {
            Some(default) => format!("{question} [{default}]:"),
            None => format!("{question}:"),
        };
        let answer = ask(&shown)?;
        let answer = if answer.is_empty() { default.unwrap_or("").to_owned() } else { answer };
        match valid(&answer) {
            Ok(()) => return Some(answer),
            Err(problem) => eprintln!("  {problem}"),
        }
    }
}

/// A numbered menu; returns the index chosen.
pub fn select(question: &str, options: &[String]) -> Option<usize> {
    eprintln!("? {question}");
    for (index, option) in options.iter().enumerate() {
        eprintln!("  [{}] {option}", index + 1);
    }
    loop {
        let answer = ask(&format!("Select [1-{}]:", options.len()))?;
        match answer.parse::<usize>() {
            Ok(n) if (1..=options.len()).contains(&n) => return Some(n - 1),
            _ => eprintln!("  enter a number between 1 and {}", options.len()),
        }
    }
}
