//! `${VAR}` and `${VAR:-default}` in configuration files.
//!
//! Interpolation runs on the raw text so that it works for any value (a URL, a number, a
//! header), but it keeps a map from the interpolated text back to the original so a later
//! parse error still points at the line and column the user wrote. Inside a TOML basic string
//! the substituted value is escaped, so an environment variable can never change the file's
//! structure. Comments are left alone, and `$${` writes a literal `${`.

use std::collections::HashMap;

/// Where variable values come from: explicit values first (the demo's backend URLs), then the
/// process environment. Explicit values exist because setting process environment variables
/// at run time is unsound in a multi-threaded program.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: HashMap<String, String>,
    use_environment: bool,
}

impl Vars {
    /// Variables from the process environment only.
    pub fn from_env() -> Self {
        Self {
            values: HashMap::new(),
            use_environment: true,
        }
    }

    /// Variables from this map only; the environment is not consulted (hermetic tests).
    pub fn only(values: HashMap<String, String>) -> Self {
        Self {
            values,
            use_environment: false,
        }
    }

    /// Adds or replaces one explicit value, which wins over the environment.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// Looks a variable up; an empty environment value counts as set.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned().or_else(|| {
            self.use_environment
                .then(|| std::env::var(name).ok())
                .flatten()
        })
    }
}

/// The text after interpolation, and how to find original offsets again.
#[derive(Debug, Clone)]
pub struct Interpolated {
    /// The text with every reference replaced.
    pub text: String,
    replacements: Vec<Replacement>,
}

#[derive(Debug, Clone, Copy)]
struct Replacement {
    out_start: usize,
    out_end: usize,
    in_start: usize,
    in_end: usize,
}

impl Interpolated {
    /// Maps a byte offset in the interpolated text to the offset in the original text. An offset
    /// inside a substituted value maps to the `$` of its reference.
    pub fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for r in &self.replacements {
            if offset < r.out_start {
                break;
            }
            if offset < r.out_end {
                return r.in_start;
            }
            shift = r.in_end as isize - r.out_end as isize;
        }
        (offset as isize + shift).max(0) as usize
    }
}

/// A reference that could not be resolved, with its byte offset in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolateError {
    /// Byte offset of the `$` in the original text.
    pub offset: usize,
    /// What is wrong, as a sentence.
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// Replaces every `${VAR}` / `${VAR:-default}` in TOML text, collecting every bad reference.
pub fn interpolate_toml(text: &str, vars: &Vars) -> Result<Interpolated, Vec<InterpolateError>> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut replacements = Vec::new();
    let mut errors = Vec::new();
    let mut context = Context::Bare;
    let mut i = 0;
    let mut copied_to = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        match context {
            Context::Comment => {
                if bytes[i] == b'\n' {
                    context = Context::Bare;
                }
                i += 1;
                continue;
            }
            Context::Bare => {
                if rest.starts_with(b"\"\"\"") {
                    context = Context::MultiBasic;
                    i += 3;
                    continue;
                } else if rest.starts_with(b"'''") {
                    context = Context::MultiLiteral;
                    i += 3;
                    continue;
                } else if bytes[i] == b'"' {
                    context = Context::Basic;
                    i += 1;
                    continue;
                } else if bytes[i] == b'\'' {
                    context = Context::Literal;
                    i += 1;
                    continue;
                } else if bytes[i] == b'#' {
                    context = Context::Comment;
                    i += 1;
                    continue;
                }
            }
            Context::Basic | Context::MultiBasic => {
                if bytes[i] == b'\\' {
                    i += 2;
                    continue;
                }
                let closes = if context == Context::Basic {
                    bytes[i] == b'"' || bytes[i] == b'\n'
                } else {
                    rest.starts_with(b"\"\"\"")
                };
                if closes {
                    i += if context == Context::Basic { 1 } else { 3 };
                    context = Context::Bare;
                    continue;
                }
            }
            Context::Literal | Context::MultiLiteral => {
                let closes = if context == Context::Literal {
                    bytes[i] == b'\'' || bytes[i] == b'\n'
                } else {
                    rest.starts_with(b"'''")
                };
                if closes {
                    i += if context == Context::Literal { 1 } else { 3 };
                    context = Context::Bare;
                    continue;
                }
            }
        }
        if rest.starts_with(b"$${") {
            out.push_str(&text[copied_to..i]);
            out.push_str("${");
            replacements.push(Replacement {
                out_start: out.len() - 2,
                out_end: out.len(),
                in_start: i,
                in_end: i + 3,
            });
            i += 3;
            copied_to = i;
            continue;
        }
        if !rest.starts_with(b"${") {
            i += 1;
            continue;
        }
        let Some(close) = text[i..].find('}').map(|c| i + c) else {
            errors.push(InterpolateError {
                offset: i,
                message: "`${` is never closed with `}`; write `$${` for a literal `${`".into(),
            });
            break;
        };
        let inner = &text[i + 2..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = if !is_variable_name(name) {
            errors.push(InterpolateError {
                offset: i,
                message: format!(
                    "`${{{inner}}}` is not a variable reference: names are letters, digits and `_`, not starting with a digit"
                ),
            });
            String::new()
        } else {
            match (vars.get(name), default) {
                (Some(value), _) => value,
                (None, Some(default)) => default.to_string(),
                (None, None) => {
                    errors.push(InterpolateError {
                        offset: i,
                        message: format!(
                            "environment variable `{name}` is not set; set it or give a default with `${{{name}:-value}}`"
                        ),
                    });
                    String::new()
                }
            }
        };
        let value = match context {
            Context::Basic | Context::MultiBasic => escape_basic(&value),
            Context::Literal | Context::MultiLiteral
                if value.contains('\'') || value.contains('\n') =>
            {
                errors.push(InterpolateError {
                    offset: i,
                    message: format!(
                        "the value of `{name}` contains a quote or newline and cannot go inside a '…' literal string; use \"…\" instead"
                    ),
                });
                String::new()
            }
            _ => value,
        };
        out.push_str(&text[copied_to..i]);
        let out_start = out.len();
        out.push_str(&value);
        replacements.push(Replacement {
            out_start,
            out_end: out.len(),
            in_start: i,
            in_end: close + 1,
        });
        i = close + 1;
        copied_to = i;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.push_str(&text[copied_to..]);
    Ok(Interpolated {
        text: out,
        replacements,
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn escape_basic(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::only(HashMap::from([
            ("HOST".to_string(), "example.org".to_string()),
            ("QUOTE".to_string(), "a\"b\\c".to_string()),
        ]))
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let out = interpolate_toml(
            "url = \"http://${HOST}:${PORT:-80}\"\nn = ${N:-5}\n",
            &vars(),
        )
        .unwrap();
        assert_eq!(out.text, "url = \"http://example.org:80\"\nn = 5\n");
    }

    #[test]
    fn escapes_values_inside_basic_strings() {
        let out = interpolate_toml("x = \"${QUOTE}\"", &vars()).unwrap();
        assert_eq!(out.text, r#"x = "a\"b\\c""#);
        let parsed: toml::Table = toml::from_str(&out.text).unwrap();
        assert_eq!(parsed["x"].as_str(), Some("a\"b\\c"));
    }

    #[test]
    fn leaves_comments_and_escaped_references_alone() {
        let out = interpolate_toml("# ${UNSET}\nx = \"$${HOST}\"", &vars()).unwrap();
        assert_eq!(out.text, "# ${UNSET}\nx = \"${HOST}\"");
    }

    #[test]
    fn reports_every_unset_variable_with_its_offset() {
        let errors = interpolate_toml("a = \"${ONE}\"\nb = \"${TWO}\"", &vars()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].offset, 5);
        assert!(errors[1].message.contains("`TWO` is not set"));
    }

    #[test]
    fn maps_offsets_back_to_the_original_text() {
        let text = "a = \"${HOST}\"\nbad";
        let out = interpolate_toml(text, &vars()).unwrap();
        let bad_out = out.text.find("bad").unwrap();
        assert_eq!(out.original_offset(bad_out), text.find("bad").unwrap());
        assert_eq!(out.original_offset(6), 5, "inside a value maps to its `$`");
    }
}
