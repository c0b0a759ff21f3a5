//! Colour, only where it helps: a terminal, NO_COLOR unset, TERM not dumb.

use std::io::IsTerminal;

use owo_colors::OwoColorize;

/// Whether to colour output written to stderr (`stderr`) or stdout.
pub fn enabled(stderr: bool) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    if std::env::var("TERM").is_ok_and(|t| t == "dumb") {
        return false;
    }
    if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    }
}

/// How to paint a piece of text.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Good,
    Bad,
    Warn,
    /// Not done yet, not failed either (an eventually-probe before its deadline).
    Wait,
    Dim,
    Bold,
}

/// `text` painted, or as is when colour is off.
pub fn paint(on: bool, paint: Paint, text: &str) -> String {
    if !on {
        return text.to_owned();
    }
    match paint {
        Paint::Good => text.green().bold().to_string(),
        Paint::Bad => text.red().bold().to_string(),
        Paint::Warn => text.yellow().bold().to_string(),
        Paint::Wait => text.yellow().dimmed().to_string(),
        Paint::Dim => text.dimmed().to_string(),
        Paint::Bold => text.bold().to_string(),
    }
}
