//! The command line: one option, so it is parsed by hand (an argument parser
//! library would add a few hundred KiB to a binary meant for small devices).

use std::ffi::OsString;
use std::path::PathBuf;

/// Where the configuration is read when neither the option nor the variable says.
pub const DEFAULT_CONFIG: &str = "/etc/flotta/agent.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_VARIABLE: &str = "FLOTTA_AGENT_CONFIG";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run the agent with this configuration file.
    Run {
        /// The agent configuration file (TOML).
        config: PathBuf,
    },
    /// Print the usage text and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// A command line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// An option this program does not have.
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
    /// `--config` without a value.
    #[error("{0} needs a file name")]
    MissingValue(String),
}

/// The usage text.
pub fn usage() -> String {
    format!(
        "The flotta device agent.\n\n\
         Usage: flotta-agent [--config FILE]\n\n\
         Options:\n  \
         -c, --config FILE  Agent configuration file (TOML) [env: {CONFIG_VARIABLE}] [default: {DEFAULT_CONFIG}]\n  \
         -h, --help         Print help\n  \
         -V, --version      Print version\n"
    )
}

/// Parses the arguments after the program name; `variable` is the value of
/// [`CONFIG_VARIABLE`], used when no `--config` is given.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    variable: Option<OsString>,
) -> Result<Invocation, UsageError> {
    let mut config: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            "-c" | "--config" => {
                let value = args
                    .next()
                    .ok_or_else(|| UsageError::MissingValue(text.clone().into_owned()))?;
                config = Some(PathBuf::from(value));
            }
            other => {
                let inline = other
                    .strip_prefix("--config=")
                    .or_else(|| other.strip_prefix("-c").filter(|v| !v.is_empty()));
                match inline {
                    Some(value) if !value.is_empty() => config = Some(PathBuf::from(value)),
                    Some(_) => return Err(UsageError::MissingValue("--config".into())),
                    None => return Err(UsageError::Unexpected(other.to_owned())),
                }
            }
        }
    }
    let config = config
        .or_else(|| variable.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    Ok(Invocation::Run { config })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], variable: Option<&str>) -> Result<Invocation, UsageError> {
        parse(
            args.iter().map(OsString::from),
            variable.map(OsString::from),
        )
    }

    fn config(path: &str) -> Result<Invocation, UsageError> {
        Ok(Invocation::Run {
            config: PathBuf::from(path),
        })
    }

    #[test]
    fn the_option_wins_over_the_variable_and_the_default() {
        assert_eq!(run(&[], None), config(DEFAULT_CONFIG));
        assert_eq!(run(&[], Some("")), config(DEFAULT_CONFIG));
        assert_eq!(run(&[], Some("/v.toml")), config("/v.toml"));
        assert_eq!(
            run(&["--config", "/a.toml"], Some("/v.toml")),
            config("/a.toml")
        );
        assert_eq!(run(&["-c", "/a.toml"], None), config("/a.toml"));
        assert_eq!(run(&["--config=/a.toml"], None), config("/a.toml"));
        assert_eq!(run(&["-c/a.toml"], None), config("/a.toml"));
        assert_eq!(run(&["-c", "/a", "-c", "/b"], None), config("/b"));
    }

    #[test]
    fn help_and_version_are_recognised() {
        assert_eq!(run(&["--help"], None), Ok(Invocation::Help));
        assert_eq!(run(&["-h", "--bogus"], None), Ok(Invocation::Help));
        assert_eq!(run(&["-V"], None), Ok(Invocation::Version));
        assert_eq!(run(&["--version"], None), Ok(Invocation::Version));
        assert!(usage().contains(CONFIG_VARIABLE));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(
            run(&["--config"], None),
            Err(UsageError::MissingValue("--config".into()))
        );
        assert_eq!(
            run(&["--config="], None),
            Err(UsageError::MissingValue("--config".into()))
        );
        assert_eq!(
            run(&["agent.toml"], None),
            Err(UsageError::Unexpected("agent.toml".into()))
        );
        assert_eq!(
            run(&["--verbose"], None),
            Err(UsageError::Unexpected("--verbose".into()))
        );
    }
}
