//! Safe XML for the `soap` connector: a small namespace-aware tree parsed with quick-xml, and
//! the mapping from a selected element to JSON.
//!
//! Backend answers are outside input, so the parser refuses what XML's older features would
//! let a hostile or broken backend do to the gateway:
//!
//! - any `<!DOCTYPE` is refused before anything is expanded, so external entities (XXE) and
//!   entity bombs ("billion laughs") never run;
//! - only the five predefined entities (`&amp; &lt; &gt; &quot; &apos;`) and numeric character
//!   references decode; any other `&name;` is an error;
//! - nesting deeper than [`MAX_DEPTH`], more than [`MAX_ELEMENTS`] elements or more than
//!   [`MAX_XML_BYTES`] bytes is refused; the tree is built with an explicit stack, so a deeply
//!   nested answer cannot overflow the thread's stack;
//! - only UTF-8 (or a declared subset of it) is read.
//!
//! Names are compared by namespace URI and local name, never by prefix, because a backend may
//! choose any prefixes (or default namespaces) it likes.

use std::sync::Arc;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::reader::Reader;
use serde_json::{Map, Value};

/// Elements may nest at most this deep (the SOAP envelope and body count).
pub(crate) const MAX_DEPTH: usize = 64;

/// A document may hold at most this many elements; each costs memory in the tree.
pub(crate) const MAX_ELEMENTS: usize = 250_000;

/// The largest document parsed, and the most read from a backend: a legacy system's runaway
/// reply must not exhaust the gateway.
pub(crate) const MAX_XML_BYTES: usize = 8 * 1024 * 1024;

/// The XML Schema instance namespace (`xsi:nil`).
pub(crate) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The namespace the `xml:` prefix is always bound to.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The namespace of `xmlns:` declarations themselves.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Why a document was refused. Messages name no content of the document, only its shape, so
/// they can be logged without leaking what a backend said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseXmlError {
    /// A `<!DOCTYPE …>`: it could declare entities, so it is never processed.
    #[error("DTDs are not accepted (a `<!DOCTYPE` is refused without being processed)")]
    Dtd,
    /// The bytes are not UTF-8.
    #[error("the document is not UTF-8")]
    NotUtf8,
    /// The XML declaration names an encoding other than UTF-8.
    #[error("encoding `{0}` is not supported; only UTF-8 is read")]
    UnsupportedEncoding(String),
    /// More than [`MAX_XML_BYTES`].
    #[error("the document is larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    /// quick-xml found the text malformed.
    #[error("not well-formed XML near byte {offset}: {message}")]
    Syntax {
        /// Where the reader was.
        offset: u64,
        /// The reader's explanation.
        message: String,
    },
    /// `&name;` for anything but the five predefined entities.
    #[error(
        "unknown entity `&{0};` (only `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and character references are accepted)"
    )]
    UnknownEntity(String),
    /// A character reference to a character XML does not allow.
    #[error("character reference `&{0};` is not a character XML allows")]
    IllegalCharacterReference(String),
    /// A `prefix:` used but not declared with `xmlns:prefix`.
    #[error("prefix `{0}:` is used but not declared")]
    UndeclaredPrefix(String),
    /// Elements nested deeper than [`MAX_DEPTH`].
    #[error("elements are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("the document has more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    /// No element at all.
    #[error("the document has no root element")]
    NoRoot,
    /// A second root element, or text outside the root.
    #[error("the document has content after or outside its root element")]
    OutsideRoot,
}

/// An element or attribute name: namespace URI (none for unqualified names) and local name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Name {
    /// The namespace URI; `None` when the name is in no namespace.
    pub(crate) namespace: Option<String>,
    /// The part after the prefix.
    pub(crate) local: String,
}

impl Name {
    /// A name in `namespace`.
    pub(crate) fn new(namespace: Option<&str>, local: &str) -> Self {
        Self {
            namespace: namespace.map(str::to_string),
            local: local.to_string(),
        }
    }

    /// Whether this is `local` in `namespace`.
    pub(crate) fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace.as_deref() == Some(namespace) && self.local == local
    }
}

/// One parsed element, with everything below it.
#[derive(Debug)]
pub(crate) struct Element {
    /// The resolved name.
    pub(crate) name: Name,
    /// The prefix as written, for messages.
    pub(crate) prefix: Option<String>,
    /// Attributes other than namespace declarations, with resolved names.
    pub(crate) attributes: Vec<(Name, String)>,
    /// Child elements and text, in document order (adjacent text is merged).
    pub(crate) children: Vec<Node>,
    scope: Option<Arc<Scope>>,
}

/// A child of an element.
#[derive(Debug)]
pub(crate) enum Node {
    /// A child element.
    Element(Element),
    /// Character data (text, CDATA and decoded references).
    Text(String),
}

/// The namespace declarations of one element, linked to those in scope around it. A linked
/// list, so a document full of declarations costs linear memory.
#[derive(Debug)]
struct Scope {
    declarations: Vec<(Option<String>, String)>,
    parent: Option<Arc<Scope>>,
}

impl Element {
    /// The child elements, in order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    /// The first child element called `name`.
    pub(crate) fn child(&self, name: &Name) -> Option<&Element> {
        self.elements().find(|e| &e.name == name)
    }

    /// The first child element with this local name, whatever its namespace (for SOAP 1.1
    /// fault parts, which servers send both qualified and unqualified).
    pub(crate) fn child_local(&self, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.name.local == local)
    }

    /// All character data directly inside this element, exactly as sent.
    pub(crate) fn text(&self) -> String {
        let mut text = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                text.push_str(t);
            }
        }
        text
    }

    /// The value of the attribute called `name`.
    pub(crate) fn attribute(&self, name: &Name) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the unqualified attribute `local` (as XML Schema and WSDL use them).
    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.namespace.is_none() && n.local == local)
            .map(|(_, v)| v.as_str())
    }

    /// `xsi:nil="true"` (or `"1"`).
    pub(crate) fn is_nil(&self) -> bool {
        self.attribute(&Name::new(Some(XSI_NS), "nil"))
            .is_some_and(|v| matches!(v.trim(), "true" | "1"))
    }

    /// The name as written (`prefix:local`), for messages.
    pub(crate) fn qualified_name(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}:{}", self.name.local),
            None => self.name.local.clone(),
        }
    }

    /// Resolves a QName written in an attribute value or text (`tns:Foo`, `soap:Client`) with
    /// the namespaces in scope at this element; an unprefixed QName takes the default
    /// namespace, as XML Schema resolves them. `None` when the prefix is not declared.
    pub(crate) fn resolve_qname(&self, qname: &str) -> Option<Name> {
        let qname = qname.trim();
        let (prefix, local) = match qname.split_once(':') {
            Some((prefix, local)) => (Some(prefix), local),
            None => (None, qname),
        };
        if local.is_empty() {
            return None;
        }
        let namespace = lookup(self.scope.as_ref(), prefix)?;
        Some(Name::new(namespace.as_deref(), local))
    }
}

/// The namespace bound to `prefix` (`None` = the default namespace) in `scope`.
/// `Some(None)` means "no namespace" (an unprefixed name with no default namespace).
fn lookup(scope: Option<&Arc<Scope>>, prefix: Option<&str>) -> Option<Option<String>> {
    if prefix == Some("xml") {
        return Some(Some(XML_NS.to_string()));
    }
    let mut current = scope;
    while let Some(level) = current {
        if let Some((_, uri)) = level
            .declarations
            .iter()
            .rev()
            .find(|(p, _)| p.as_deref() == prefix)
        {
            return Some((!uri.is_empty()).then(|| uri.clone()));
        }
        current = level.parent.as_ref();
    }
    match prefix {
        None => Some(None),
        Some(_) => None,
    }
}

/// Parses a whole document into its root element, refusing everything listed in the module
/// documentation.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, ParseXmlError> {
    if bytes.len() > MAX_XML_BYTES {
        return Err(ParseXmlError::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| ParseXmlError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|error| ParseXmlError::Syntax {
            offset: reader.error_position(),
            message: error.to_string(),
        })?;
        let syntax = |message: String| ParseXmlError::Syntax {
            offset: reader.buffer_position(),
            message,
        };
        match event {
            Event::DocType(_) => return Err(ParseXmlError::Dtd),
            Event::Decl(declaration) => {
                if let Some(encoding) = declaration.encoding() {
                    let encoding = encoding.map_err(|e| syntax(e.to_string()))?;
                    let encoding = String::from_utf8_lossy(&encoding).into_owned();
                    if !matches!(
                        encoding.to_ascii_lowercase().as_str(),
                        "utf-8" | "utf8" | "us-ascii" | "ascii"
                    ) {
                        return Err(ParseXmlError::UnsupportedEncoding(encoding));
                    }
                }
            }
            Event::Start(start) => {
                count_element(stack.len(), &mut count)?;
                let element = open(&start, stack.last().map(|e| &e.scope), &syntax)?;
                stack.push(element);
            }
            Event::Empty(start) => {
                count_element(stack.len(), &mut count)?;
                let element = open(&start, stack.last().map(|e| &e.scope), &syntax)?;
                attach(element, &mut stack, &mut root)?;
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| syntax("a closing tag without an opening tag".to_string()))?;
                attach(element, &mut stack, &mut root)?;
            }
            Event::Text(text) => {
                let text = text.xml10_content().map_err(|e| syntax(e.to_string()))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let data = data.xml10_content().map_err(|e| syntax(e.to_string()))?;
                push_text(&mut stack, &data)?;
            }
            Event::GeneralRef(reference) => {
                let decoded = resolve_reference(&reference)?;
                push_text(&mut stack, &decoded)?;
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(ParseXmlError::Syntax {
            offset: reader.buffer_position(),
            message: "the document ends inside an element".to_string(),
        });
    }
    root.ok_or(ParseXmlError::NoRoot)
}

/// Counts one more element opened at `depth`, refusing it past the limits.
fn count_element(depth: usize, count: &mut usize) -> Result<(), ParseXmlError> {
    if depth >= MAX_DEPTH {
        return Err(ParseXmlError::TooDeep);
    }
    if *count >= MAX_ELEMENTS {
        return Err(ParseXmlError::TooManyElements);
    }
    *count += 1;
    Ok(())
}

/// Builds an element from its start tag: declarations first, then names resolved with them.
fn open(
    start: &BytesStart<'_>,
    parent_scope: Option<&Option<Arc<Scope>>>,
    syntax: &impl Fn(String) -> ParseXmlError,
) -> Result<Element, ParseXmlError> {
    let parent_scope = parent_scope.cloned().flatten();
    let mut declarations = Vec::new();
    let mut raw_attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| syntax(e.to_string()))?;
        let key = std::str::from_utf8(attribute.key.as_ref())
            .map_err(|_| ParseXmlError::NotUtf8)?
            .to_string();
        let raw = std::str::from_utf8(&attribute.value).map_err(|_| ParseXmlError::NotUtf8)?;
        let value = unescape_attribute(raw)?;
        match attribute.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => declarations.push((None, value)),
            Some(PrefixDeclaration::Named(prefix)) => {
                let prefix = String::from_utf8_lossy(prefix).into_owned();
                if value.is_empty() {
                    return Err(syntax(format!(
                        "prefix `{prefix}:` cannot be bound to an empty namespace"
                    )));
                }
                declarations.push((Some(prefix), value));
            }
            None => raw_attributes.push((key, value)),
        }
    }
    let scope = if declarations.is_empty() {
        parent_scope
    } else {
        Some(Arc::new(Scope {
            declarations,
            parent: parent_scope,
        }))
    };

    let qname = std::str::from_utf8(start.name().as_ref())
        .map_err(|_| ParseXmlError::NotUtf8)?
        .to_string();
    let (prefix, local) = match qname.split_once(':') {
        Some((prefix, local)) => (Some(prefix.to_string()), local.to_string()),
        None => (None, qname.clone()),
    };
    if local.is_empty() || local.contains(':') || prefix.as_deref() == Some("") {
        return Err(syntax(format!("`{qname}` is not an element name")));
    }
    let namespace = lookup(scope.as_ref(), prefix.as_deref())
        .ok_or_else(|| ParseXmlError::UndeclaredPrefix(prefix.clone().unwrap_or_default()))?;

    let mut attributes = Vec::with_capacity(raw_attributes.len());
    for (key, value) in raw_attributes {
        let name = match key.split_once(':') {
            // Unprefixed attributes are in no namespace, whatever the default namespace is.
            None => Name::new(None, &key),
            Some((prefix, local)) => {
                let namespace = lookup(scope.as_ref(), Some(prefix))
                    .flatten()
                    .ok_or_else(|| ParseXmlError::UndeclaredPrefix(prefix.to_string()))?;
                if namespace == XMLNS_NS {
                    continue;
                }
                Name::new(Some(&namespace), local)
            }
        };
        attributes.push((name, value));
    }
    Ok(Element {
        name: Name { namespace, local },
        prefix,
        attributes,
        children: Vec::new(),
        scope,
    })
}

/// Hangs a finished element under its parent, or makes it the root.
fn attach(
    element: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
) -> Result<(), ParseXmlError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None if root.is_some() => return Err(ParseXmlError::OutsideRoot),
        None => *root = Some(element),
    }
    Ok(())
}

/// Adds character data to the open element (merging with text just before it); outside the
/// root only whitespace is allowed.
fn push_text(stack: &mut [Element], text: &str) -> Result<(), ParseXmlError> {
    let Some(parent) = stack.last_mut() else {
        return if text.chars().all(char::is_whitespace) {
            Ok(())
        } else {
            Err(ParseXmlError::OutsideRoot)
        };
    };
    match parent.children.last_mut() {
        Some(Node::Text(previous)) => previous.push_str(text),
        _ => parent.children.push(Node::Text(text.to_string())),
    }
    Ok(())
}

/// Decodes `&…;` in text: a character reference or one of the five predefined entities.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, ParseXmlError> {
    let name = String::from_utf8_lossy(reference).into_owned();
    decode_reference(&name).map(String::from)
}

/// The text of the reference `&name;` (without `&` and `;`).
fn decode_reference(name: &str) -> Result<std::borrow::Cow<'static, str>, ParseXmlError> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix('x') {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => number.parse::<u32>().ok(),
        };
        return code
            .and_then(char::from_u32)
            .filter(|c| is_xml_char(*c))
            .map(|c| c.to_string().into())
            .ok_or_else(|| ParseXmlError::IllegalCharacterReference(name.to_string()));
    }
    Ok(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => return Err(ParseXmlError::UnknownEntity(name.to_string())),
    }
    .into())
}

/// Decodes an attribute value: references as in text, and literal whitespace normalised to
/// spaces as XML requires.
fn unescape_attribute(raw: &str) -> Result<String, ParseXmlError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        push_normalised(&mut out, &rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').ok_or_else(|| ParseXmlError::Syntax {
            offset: 0,
            message: "an `&` in an attribute value is not a reference".to_string(),
        })?;
        out.push_str(&decode_reference(&after[..end])?);
        rest = &after[end + 1..];
    }
    push_normalised(&mut out, rest);
    Ok(out)
}

fn push_normalised(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if matches!(c, '\t' | '\n' | '\r') {
            ' '
        } else {
            c
        }
    }));
}

/// Whether XML 1.0 allows `c` in a document at all.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes text for an element's content or an attribute value, so that no value can add
/// markup: the five special characters become entities, and tab, newline and carriage return
/// become character references so they survive attribute-value and line-end normalisation.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// The elements an element path leads to, from the children of `from`: every step but the
/// last follows the first match; the last collects every matching sibling.
pub(crate) fn select<'a>(from: &'a Element, path: &[Name]) -> Vec<&'a Element> {
    let Some((last, steps)) = path.split_last() else {
        return vec![from];
    };
    let mut current = from;
    for step in steps {
        match current.child(step) {
            Some(next) => current = next,
            None => return Vec::new(),
        }
    }
    current.elements().filter(|e| &e.name == last).collect()
}

/// Converts a selected element to JSON.
///
/// - `xsi:nil="true"` → `null`;
/// - an element with child elements → an object keyed by the children's *local* names;
///   repeated siblings with the same name → an array; attributes (other than `xsi:*` and
///   namespace declarations) → `"@local"` keys; non-whitespace text mixed with the child
///   elements → a `"#text"` key (trimmed);
/// - an element without child elements → its text exactly as sent (an empty element is `""`);
///   its attributes are dropped, so a leaf is always a string or null, whatever attributes a
///   backend adds later;
/// - a child whose path relative to the selected element is in `lists` → always an array, and
///   `[]` when the parent is present without any such child (the parent is then an object even
///   if it is empty).
///
/// Numbers, booleans and dates stay strings; the graph coerces them by the schema's types.
pub(crate) fn to_json(element: &Element, lists: &[Vec<Name>]) -> Value {
    let mut path = Vec::new();
    convert(element, &mut path, lists)
}

fn convert(element: &Element, path: &mut Vec<Name>, lists: &[Vec<Name>]) -> Value {
    if element.is_nil() {
        return Value::Null;
    }
    let list_children: Vec<&Name> = lists
        .iter()
        .filter(|list| list.len() == path.len() + 1 && list.starts_with(path))
        .filter_map(|list| list.last())
        .collect();
    let mut children = element.elements().peekable();
    if children.peek().is_none() && list_children.is_empty() {
        return Value::String(element.text());
    }

    let mut object = Map::new();
    for (name, value) in &element.attributes {
        if name.namespace.as_deref() != Some(XSI_NS) {
            object.insert(format!("@{}", name.local), Value::String(value.clone()));
        }
    }
    let mixed = element.text();
    if !mixed.trim().is_empty() {
        object.insert("#text".to_string(), Value::String(mixed.trim().to_string()));
    }
    for child in children {
        let is_list = list_children.contains(&&child.name);
        path.push(child.name.clone());
        let value = convert(child, path, lists);
        path.pop();
        let key = child.name.local.clone();
        match object.get_mut(&key) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None if is_list => {
                object.insert(key, Value::Array(vec![value]));
            }
            None => {
                object.insert(key, value);
            }
        }
    }
    for name in list_children {
        object
            .entry(name.local.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NS: &str = "urn:civicgraph:demo:dmv:v1";

    fn dmv(local: &str) -> Name {
        Name::new(Some(NS), local)
    }

    fn parse_str(text: &str) -> Result<Element, ParseXmlError> {
        parse(text.as_bytes())
    }

    #[test]
    fn escape_leaves_no_markup_in_a_value() {
        let value = "</dmv:licenseNumber><evil a=\"1\" b='2'/>&amp;\t\n\r";
        let escaped = escape(value);
        assert_eq!(
            escaped,
            "&lt;/dmv:licenseNumber&gt;&lt;evil a=&quot;1&quot; b=&apos;2&apos;/&gt;&amp;amp;&#9;&#10;&#13;"
        );
        let doc = format!("<r a=\"{escaped}\">{escaped}</r>");
        let root = parse_str(&doc).expect("escaped text is well-formed");
        assert_eq!(root.text(), value, "text round-trips exactly");
        assert_eq!(root.attr("a"), Some(value), "attributes round-trip exactly");
        assert_eq!(root.elements().count(), 0);
    }

    #[test]
    fn names_match_by_namespace_uri_not_by_prefix() {
        for doc in [
            format!("<a:r xmlns:a=\"{NS}\"><a:name>Ada</a:name></a:r>"),
            format!("<r xmlns=\"{NS}\"><name>Ada</name></r>"),
            format!("<x:r xmlns:x=\"{NS}\"><y:name xmlns:y=\"{NS}\">Ada</y:name></x:r>"),
        ] {
            let root = parse_str(&doc).expect("parses");
            assert_eq!(root.name, dmv("r"), "{doc}");
            assert_eq!(
                root.child(&dmv("name")).map(Element::text),
                Some("Ada".into())
            );
        }
        let other = parse_str("<r xmlns:a=\"urn:other\"><a:name>Ada</a:name></r>").expect("parses");
        assert!(
            other.child(&dmv("name")).is_none(),
            "same prefix-free local name, other namespace"
        );
        assert_eq!(
            parse_str("<a:r/>").map(|_| ()),
            Err(ParseXmlError::UndeclaredPrefix("a".into()))
        );
    }

    #[test]
    fn converts_objects_repeats_lists_nil_and_empty_elements() {
        let doc = format!(
            "<d:license xmlns:d=\"{NS}\" xmlns:xsi=\"{XSI_NS}\" d:id=\"L1\">
               <d:number>D123</d:number>
               <d:class> B </d:class>
               <d:expires xsi:nil=\"true\"/>
               <d:note/>
               <d:points>3</d:points>
               <d:restrictions><d:restriction>LENSES</d:restriction></d:restrictions>
               <d:endorsements/>
               <d:vehicles><d:vehicle>A</d:vehicle><d:vehicle>B</d:vehicle></d:vehicles>
               <d:amount currency=\"EUR\">12.50</d:amount>
             </d:license>"
        );
        let root = parse_str(&doc).expect("parses");
        let lists = vec![
            vec![dmv("restrictions"), dmv("restriction")],
            vec![dmv("endorsements"), dmv("endorsement")],
        ];
        assert_eq!(
            to_json(&root, &lists),
            json!({
                "@id": "L1",
                "number": "D123",
                "class": " B ",
                "expires": null,
                "note": "",
                "points": "3",
                "restrictions": {"restriction": ["LENSES"]},
                "endorsements": {"endorsement": []},
                "vehicles": {"vehicle": ["A", "B"]},
                "amount": "12.50",
            })
        );
    }

    #[test]
    fn a_nil_selected_element_is_null_and_lists_apply_at_the_top() {
        let root = parse_str(&format!(
            "<d:r xmlns:d=\"{NS}\" xmlns:i=\"{XSI_NS}\"><d:x i:nil=\"1\"><d:y>1</d:y></d:x><d:z/></d:r>"
        ))
        .expect("parses");
        let x = root.child(&dmv("x")).expect("x");
        assert_eq!(to_json(x, &[]), Value::Null);
        let lists = vec![vec![dmv("item")]];
        assert_eq!(
            to_json(root.child(&dmv("z")).expect("z"), &lists),
            json!({"item": []})
        );
    }

    #[test]
    fn select_follows_the_path_and_collects_repeats_at_the_end() {
        let root = parse_str(&format!(
            "<d:b xmlns:d=\"{NS}\"><d:resp><d:v>1</d:v><d:v>2</d:v></d:resp></d:b>"
        ))
        .expect("parses");
        let found = select(&root, &[dmv("resp"), dmv("v")]);
        assert_eq!(
            found.iter().map(|e| e.text()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(select(&root, &[dmv("nope"), dmv("v")]).is_empty());
    }

    #[test]
    fn decodes_predefined_entities_character_references_and_cdata() {
        let root = parse_str("<r>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;<![CDATA[<c>]]></r>")
            .expect("parses");
        assert_eq!(root.text(), "<&>\"'AB<c>");
    }

    #[test]
    fn refuses_unknown_entities_and_illegal_character_references() {
        assert_eq!(
            parse_str("<r>&nbsp;</r>").map(|_| ()),
            Err(ParseXmlError::UnknownEntity("nbsp".into()))
        );
        assert_eq!(
            parse_str("<r a=\"&xxe;\"/>").map(|_| ()),
            Err(ParseXmlError::UnknownEntity("xxe".into()))
        );
        assert_eq!(
            parse_str("<r>&#0;</r>").map(|_| ()),
            Err(ParseXmlError::IllegalCharacterReference("#0".into()))
        );
    }

    #[test]
    fn refuses_any_doctype_so_xxe_and_entity_bombs_never_expand() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><x>&xxe;</x>";
        assert_eq!(parse_str(xxe).map(|_| ()), Err(ParseXmlError::Dtd));
        let mut bomb = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let previous = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            bomb.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&{previous};").repeat(10)
            ));
        }
        bomb.push_str("]><lolz>&lol9;</lolz>");
        assert_eq!(parse_str(&bomb).map(|_| ()), Err(ParseXmlError::Dtd));
    }

    #[test]
    fn refuses_deep_nesting_without_recursing() {
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(parse_str(&deep).map(|_| ()), Err(ParseXmlError::TooDeep));
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse_str(&ok).is_ok(), "exactly the limit is accepted");
    }

    #[test]
    fn refuses_malformed_documents_other_encodings_and_second_roots() {
        for bad in ["<a><b></a>", "<a>", "", "text", "<a/><b/>", "<a/>text"] {
            assert!(parse_str(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse_str("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").map(|_| ()),
            Err(ParseXmlError::UnsupportedEncoding("ISO-8859-1".into()))
        );
        assert_eq!(
            parse(b"<a>\xff</a>").map(|_| ()),
            Err(ParseXmlError::NotUtf8)
        );
        assert!(parse_str("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>").is_ok());
    }

    #[test]
    fn resolves_qnames_in_text_with_the_scope_of_the_element() {
        let root = parse_str(&format!(
            "<r xmlns:d=\"{NS}\"><c xmlns=\"urn:default\">d:Code</c></r>"
        ))
        .expect("parses");
        let c = root.child_local("c").expect("c");
        assert_eq!(c.resolve_qname("d:Code"), Some(dmv("Code")));
        assert_eq!(
            c.resolve_qname("Plain"),
            Some(Name::new(Some("urn:default"), "Plain"))
        );
        assert_eq!(c.resolve_qname("zz:Code"), None);
        assert_eq!(
            c.resolve_qname("xml:lang"),
            Some(Name::new(Some(XML_NS), "lang"))
        );
    }
}
