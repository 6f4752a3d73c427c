//! The examples' command lines: `--help` prints the usage (options and the environment variables
//! the program reads) and exits 0; an unknown option or a bad value prints one line and exits
//! with status 2, as command-line programs do.

use std::str::FromStr;

/// The parsed arguments of one example.
#[derive(Debug)]
pub struct Cli {
    program: &'static str,
    /// `(option, value)`; flags have no value.
    given: Vec<(String, Option<String>)>,
}

impl Cli {
    /// Parses `std::env::args()` against `options` (`(name, takes a value)`). On `--help` or
    /// `-h` prints `usage` and exits 0.
    pub fn parse(program: &'static str, usage: &str, options: &[(&str, bool)]) -> Cli {
        Cli::parse_from(program, usage, options, std::env::args().skip(1))
    }

    fn parse_from(
        program: &'static str,
        usage: &str,
        options: &[(&str, bool)],
        args: impl IntoIterator<Item = String>,
    ) -> Cli {
        let mut cli = Cli {
            program,
            given: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                print!("{usage}");
                std::process::exit(0);
            }
            match options.iter().find(|(name, _)| *name == arg) {
                Some((_, true)) => match args.next() {
                    Some(value) => cli.given.push((arg, Some(value))),
                    None => cli.fail(&format!("{arg} takes a value")),
                },
                Some((_, false)) => cli.given.push((arg, None)),
                None => cli.fail(&format!("unknown argument {arg:?}")),
            }
        }
        cli
    }

    /// Whether the flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.given.iter().any(|(given, _)| given == name)
    }

    /// The value of `name`, parsed (the last one given); exits with status 2 if it does not parse.
    pub fn value<T: FromStr>(&self, name: &str) -> Option<T> {
        let (_, value) = self.given.iter().rev().find(|(given, _)| given == name)?;
        let value = value.as_deref().unwrap_or_default();
        Some(
            value
                .parse()
                .unwrap_or_else(|_| self.fail(&format!("{name} {value:?}: not a valid value"))),
        )
    }

    /// Prints `message` as one line and exits with status 2.
    pub fn fail(&self, message: &str) -> ! {
        eprintln!("{}: {message} (see --help)", self.program);
        std::process::exit(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_values() {
        let args = ["--load", "15", "--exit"].map(String::from);
        let cli = Cli::parse_from("service", "", &[("--load", true), ("--exit", false)], args);
        assert!(cli.flag("--exit"));
        assert_eq!(cli.value::<u64>("--load"), Some(15));
        assert_eq!(cli.value::<u64>("--secs"), None);
    }
}
