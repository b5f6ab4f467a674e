//! README.md's configuration reference lists every option that `tuxa --help`
//! (and each sub-command's `--help`) lists: the help is generated from the
//! options' definitions, so an option added there without a README row
//! fails here.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tuxa"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("running tuxa --help");
    assert!(out.status.success(), "tuxa {args:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The long options an option list of clap's help defines, one a line:
/// `  -h, --help  …` or `      --listen <ADDR>  …`.
fn long_options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            // `-h, --help`: the short form first.
            let l = match l.as_bytes() {
                [b'-', c, b',', b' ', ..] if c.is_ascii_alphanumeric() => &l[4..],
                _ => l,
            };
            let name = l.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_owned())
        })
        .collect()
}

/// The sub-commands under `Commands:` (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Whether `text` has `--name` not followed by more of a name (`--key` is
/// not found in `--key-file`).
fn mentions(text: &str, name: &str) -> bool {
    let needle = format!("--{name}");
    text.match_indices(&needle).any(|(i, _)| {
        !text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn readme_lists_every_option_of_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let reference = readme
        .split("## Configuration reference")
        .nth(1)
        .expect("README.md has a Configuration reference")
        .split("\n## ")
        .next()
        .unwrap();

    let top = help(&[]);
    let mut options = long_options(&top);
    let commands = commands(&top);
    assert!(
        commands.iter().any(|c| c == "rotate-key"),
        "sub-commands not found in --help: {top}"
    );
    assert!(
        options.len() > 25,
        "too few options found in --help: {options:?}"
    );
    for command in &commands {
        assert!(
            reference.contains(&format!("`tuxa {command}")),
            "README's configuration reference lacks the sub-command {command}"
        );
        options.extend(long_options(&help(&[command])));
    }
    options.sort();
    options.dedup();
    let missing: Vec<_> = options.iter().filter(|o| !mentions(reference, o)).collect();
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks these options of --help: {missing:?}"
    );
}
