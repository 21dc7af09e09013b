//! `{placeholder}` templates in connector files (paths, query values, body strings).
//!
//! A template is parsed once when the connector is built; rendering is then a walk over
//! literal and placeholder parts, with each value encoded for where it goes.

use serde_json::Value;

use super::Arguments;

/// A parsed template such as `/v1/taxpayers/{tin}/account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

/// Why a placeholder value cannot be rendered into text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "argument `{name}` must be text, a number or a boolean to go into a backend request, not {found}"
)]
pub struct RenderError {
    /// The placeholder.
    pub name: String,
    /// What kind of JSON value it had.
    pub found: &'static str,
}

impl Template {
    /// Parses a template; the error is a sentence and the byte offset of the bad brace.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err((i, "`{` is never closed with `}`".to_string()));
                    };
                    let name = &rest[..end];
                    if !is_placeholder_name(name) {
                        return Err((
                            i,
                            format!(
                                "`{{{name}}}` is not a placeholder: names are letters, digits and `_`, not starting with a digit"
                            ),
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(name.to_string()));
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => return Err((i, "`}` without a matching `{`".to_string())),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The placeholder names in order of appearance (with repeats removed).
    pub fn placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Placeholder(name) = part
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// When the whole template is one placeholder, its name (a body value keeps its JSON type).
    pub fn sole_placeholder(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Placeholder(name)] => Some(name),
            _ => None,
        }
    }

    /// Renders with each value passed through `encode`. `Ok(None)` when a placeholder's value is
    /// null or absent: the caller decides whether that skips the call or drops a parameter.
    pub fn render(
        &self,
        args: &Arguments,
        encode: impl Fn(&str) -> String,
    ) -> Result<Option<String>, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Placeholder(name) => match args.get(name.as_str()) {
                    None | Some(Value::Null) => return Ok(None),
                    Some(value) => out.push_str(&encode(&scalar_text(name, value)?)),
                },
            }
        }
        Ok(Some(out))
    }
}

fn scalar_text(name: &str, value: &Value) -> Result<String, RenderError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(_) | Value::Object(_) => Err(RenderError {
                    name: name.to_string(),
                    found: "a nested list",
                }),
                item => scalar_text(name, item),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        Value::Object(_) => Err(RenderError {
            name: name.to_string(),
            found: "an object",
        }),
    }
}

fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Arguments {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn finds_placeholders_in_order() {
        let t = Template::parse("/v1/{a}/x/{b}/{a}").unwrap();
        assert_eq!(t.placeholders(), vec!["a", "b"]);
        assert_eq!(t.sole_placeholder(), None);
        assert_eq!(
            Template::parse("{x}").unwrap().sole_placeholder(),
            Some("x")
        );
    }

    #[test]
    fn rejects_malformed_braces_with_their_offset() {
        assert_eq!(Template::parse("/a/{tin").unwrap_err().0, 3);
        assert_eq!(Template::parse("/a/}").unwrap_err().0, 3);
        assert!(
            Template::parse("/{1x}")
                .unwrap_err()
                .1
                .contains("not a placeholder")
        );
    }

    #[test]
    fn renders_with_encoding_and_skips_on_null() {
        let t = Template::parse("/p/{id}/n/{n}").unwrap();
        let rendered = t
            .render(&args(json!({"id": "a/b", "n": 3})), |s| {
                s.replace('/', "%2F")
            })
            .unwrap();
        assert_eq!(rendered.as_deref(), Some("/p/a%2Fb/n/3"));
        assert_eq!(
            t.render(&args(json!({"id": null, "n": 1})), str::to_string),
            Ok(None)
        );
        assert!(
            t.render(&args(json!({"id": {}, "n": 1})), str::to_string)
                .is_err()
        );
    }
}
