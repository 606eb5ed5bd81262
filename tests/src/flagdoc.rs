//! The README's flag reference, rendered from a clap [`Command`] so the text cannot
//! drift from the parser: one heading per (sub)command, its about text, and a Markdown
//! table of its flags. `tests/tests/readme_flags.rs` compares README.md with this
//! rendering (and rewrites it under `FAULTLINE_BLESS=1`). Depends only on clap.
use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command};

/// Renders `cmd` and each of its subcommands, depth first in declaration order, as
/// Markdown: a `####` heading with the full command name (`loadgen packets syn`), the
/// about text, the subcommands it has, its required groups, and a
/// `| flag | value | default | meaning |` table. Hidden arguments and subcommands, the
/// automatic `--help`/`--version` and the automatic `help` subcommand are left out.
/// The output depends only on `cmd`, and ends with one newline.
pub fn render(cmd: &Command) -> String {
    // Building settles what the derive leaves implicit (actions, value counts, value
    // parsers), so a flag that takes no value is told from one that does.
    let mut built = cmd.clone();
    built.build();
    let mut sections = Vec::new();
    render_into(&built, built.get_name(), &mut sections);
    let mut text = sections.concat();
    text.truncate(text.trim_end().len());
    text.push('\n');
    text
}

fn render_into(cmd: &Command, full_name: &str, sections: &mut Vec<String>) {
    let mut out = String::new();
    writeln!(out, "#### `{full_name}`\n").unwrap();
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        writeln!(out, "{}\n", one_line(&about.to_string())).unwrap();
    }
    let subs: Vec<&Command> = visible_subcommands(cmd).collect();
    if !subs.is_empty() {
        let names: Vec<String> = subs
            .iter()
            .map(|s| format!("`{full_name} {}`", s.get_name()))
            .collect();
        writeln!(out, "Subcommands: {}.\n", names.join(", ")).unwrap();
    }
    for group in cmd.get_groups().filter(|g| g.is_required_set()) {
        let members: Vec<String> = group
            .get_args()
            .filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == id))
            .map(|a| format!("`{}`", flag_name(a)))
            .collect();
        writeln!(out, "One of {} is required.\n", members.join(", ")).unwrap();
    }
    let rows: Vec<[String; 4]> = cmd
        .get_arguments()
        .filter(|a| documented(a))
        .map(row)
        .collect();
    if !rows.is_empty() {
        out.push_str("| flag | value | default | meaning |\n| --- | --- | --- | --- |\n");
        for cells in rows {
            let cells = cells.map(|c| escape_cell(&c));
            writeln!(out, "| {} |", cells.join(" | ")).unwrap();
        }
        out.push('\n');
    }
    sections.push(out);
    for sub in subs {
        render_into(sub, &format!("{full_name} {}", sub.get_name()), sections);
    }
}

/// Subcommands a user sees: not hidden, and not the `help` clap adds when building.
fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// Whether an argument belongs in the table.
fn documented(arg: &Arg) -> bool {
    !arg.is_hide_set()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// `-H, --header` for an option, the value name (`URL`) for a positional.
fn flag_name(arg: &Arg) -> String {
    if arg.is_positional() {
        return value_names(arg);
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    names.extend(
        arg.get_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|a| format!("--{a}")),
    );
    names.join(", ")
}

fn value_names(arg: &Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    }
}

/// The four cells of one argument: flag, value, default, meaning.
fn row(arg: &Arg) -> [String; 4] {
    [
        format!("`{}`", flag_name(arg)),
        value_cell(arg),
        default_cell(arg),
        meaning_cell(arg),
    ]
}

fn value_cell(arg: &Arg) -> String {
    let action = arg.get_action();
    if !action.takes_values() {
        return match action {
            ArgAction::Count => "—, repeatable".to_owned(),
            _ => "—".to_owned(),
        };
    }
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| format!("`{}`", p.get_name()))
        .collect();
    let mut cell = if !possible.is_empty() {
        possible.join(", ")
    } else if arg.is_positional() {
        "positional".to_owned()
    } else {
        format!("`{}`", value_names(arg))
    };
    let repeatable = matches!(action, ArgAction::Append)
        || arg
            .get_num_args()
            .is_some_and(|n| n.max_values() > 1 && !arg.is_positional());
    if arg.is_positional() && matches!(action, ArgAction::Append) {
        cell.push_str(", one or more");
    } else if repeatable {
        cell.push_str(", repeatable");
    }
    if let Some(delimiter) = arg.get_value_delimiter() {
        write!(cell, ", `{delimiter}`-separated").unwrap();
    }
    cell
}

fn default_cell(arg: &Arg) -> String {
    let mut parts = Vec::new();
    if arg.is_required_set() {
        parts.push("required".to_owned());
    }
    if arg.get_action().takes_values() && !arg.is_hide_default_value_set() {
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| match d.to_string_lossy() {
                // An empty code span is not Markdown; say what the default is.
                v if v.is_empty() => "`\"\"` (empty)".to_owned(),
                v => format!("`{v}`"),
            })
            .collect();
        if !defaults.is_empty() {
            parts.push(defaults.join(", "));
        }
    }
    if let Some(env) = arg.get_env().filter(|_| !arg.is_hide_env_set()) {
        parts.push(format!("env `{}`", env.to_string_lossy()));
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(", ")
    }
}

fn meaning_cell(arg: &Arg) -> String {
    arg.get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| one_line(&h.to_string()))
        .unwrap_or_default()
}

/// Whitespace runs (line and paragraph breaks included) as one space: a table cell is
/// one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `|` would end the cell, even inside a code span (GitHub Flavored Markdown, tables
/// extension: "include a pipe in a cell's content by escaping it").
fn escape_cell(cell: &str) -> String {
    cell.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, ArgGroup, Command};

    use super::render;

    fn tool() -> Command {
        Command::new("tool")
            .about("A tool\nthat does things.")
            .version("1.0")
            .arg(
                Arg::new("verbose")
                    .short('v')
                    .long("verbose")
                    .action(ArgAction::SetTrue)
                    .help("Say more."),
            )
            .subcommand(
                Command::new("run")
                    .about("Run it.")
                    .arg(Arg::new("url").value_name("URL").help("Where to go."))
                    .arg(
                        Arg::new("header")
                            .short('H')
                            .long("header")
                            .value_name("NAME: VALUE")
                            .action(ArgAction::Append)
                            .help("A header, repeatable."),
                    )
                    .arg(
                        Arg::new("format")
                            .long("format")
                            .value_parser(["text", "json"])
                            .default_value("text")
                            .help("Output format: text|json."),
                    )
                    .arg(
                        Arg::new("token")
                            .long("token")
                            .env("TOOL_TOKEN")
                            .required(true)
                            .help("Secret."),
                    )
                    .arg(Arg::new("debug-only").long("debug-only").hide(true))
                    .arg(
                        Arg::new("name")
                            .long("name")
                            .default_value("")
                            .help("Name."),
                    )
                    .arg(
                        Arg::new("port")
                            .long("port")
                            .value_delimiter(',')
                            .action(ArgAction::Append)
                            .value_parser(clap::value_parser!(u16))
                            .help("Ports."),
                    )
                    .arg(Arg::new("a").long("a").action(ArgAction::SetTrue))
                    .arg(Arg::new("b").long("b").action(ArgAction::SetTrue))
                    .group(ArgGroup::new("ab").args(["a", "b"]).required(true))
                    .subcommand(Command::new("deep").about("Nested.")),
            )
            .subcommand(Command::new("secret").hide(true))
    }

    fn table_rows(text: &str, section: &str) -> Vec<String> {
        let start = text
            .find(&format!("#### `{section}`\n"))
            .unwrap_or_else(|| panic!("no section {section} in:\n{text}"));
        text[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("####"))
            .filter(|l| l.starts_with("| `"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_command_gets_a_heading_with_its_full_name_in_order() {
        let text = render(&tool());
        let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("####")).collect();
        assert_eq!(
            headings,
            ["#### `tool`", "#### `tool run`", "#### `tool run deep`"],
            "{text}"
        );
        assert!(text.contains("A tool that does things.\n"), "{text}");
        assert!(
            text.contains("Subcommands: `tool run`.\n"),
            "hidden and help subcommands are left out:\n{text}"
        );
        assert!(text.ends_with("Nested.\n"), "{text:?}");
    }

    #[test]
    fn rows_carry_names_values_defaults_and_help() {
        let text = render(&tool());
        assert_eq!(
            table_rows(&text, "tool"),
            ["| `-v, --verbose` | — | — | Say more. |"],
            "no --help or --version rows:\n{text}"
        );
        assert_eq!(
            table_rows(&text, "tool run"),
            [
                "| `URL` | positional | — | Where to go. |",
                "| `-H, --header` | `NAME: VALUE`, repeatable | — | A header, repeatable. |",
                "| `--format` | `text`, `json` | `text` | Output format: text\\|json. |",
                "| `--token` | `TOKEN` | required, env `TOOL_TOKEN` | Secret. |",
                "| `--name` | `NAME` | `\"\"` (empty) | Name. |",
                "| `--port` | `PORT`, repeatable, `,`-separated | — | Ports. |",
                "| `--a` | — | — |  |",
                "| `--b` | — | — |  |",
            ],
            "the hidden --debug-only is left out:\n{text}"
        );
        assert!(
            text.contains("One of `--a`, `--b` is required.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_renamed_flag_changes_the_output() {
        let renamed = tool().mut_subcommand("run", |run| run.mut_arg("header", |a| a.long("hdr")));
        assert_ne!(render(&tool()), render(&renamed));
        assert_eq!(render(&tool()), render(&tool()), "deterministic");
    }
}
