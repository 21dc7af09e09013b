//! Verifying `soap` operations against a WSDL 1.1 file at check time.
//!
//! The WSDL is read with the same safe parser as backend answers (no DTDs, no external
//! entities) and is never fetched over the network; `wsdl:import` and `xs:import`/`xs:include`
//! are not followed. What is checked, for each operation:
//!
//! 1. **The action.** With `action`, some `wsdl:binding/wsdl:operation` must carry it as its
//!    `soap:operation/@soapAction` (SOAP 1.1 or 1.2 binding). When the WSDL declares no
//!    `soapAction` at all, or the operation has no `action`, the operation's name or its body's
//!    root element must instead match a `wsdl:portType` operation (by name, or by its input).
//! 2. **The body's root element** must be a global `xs:element` of an embedded schema
//!    (`wsdl:types/xs:schema`); when the action names a WSDL operation whose input message has
//!    `element=` parts (document/literal), the root must be one of them.
//! 3. **`select`** must be a path through the schemas: its first step a global element, each
//!    further step a child element of the previous one's type; and each **`lists`** path must
//!    continue from the selected element the same way.
//!
//! An operation's batch form (its list operation) is checked the same way: its action and
//! body's root element as in 1 and 2; `items` as a path through the schemas like `select`;
//! then `match` and the batch's `select` each continue from the item, and `lists` from what the
//! batch's `select` leads to (or from the item).
//!
//! Child elements are found through inline `xs:complexType`s and `type=` references to named
//! complex types, their `xs:sequence`, `xs:choice` and `xs:all` (nested), `xs:group ref=`,
//! `xs:element ref=`, and `xs:complexContent/xs:extension` (the base type's children first).
//! Local elements are qualified by `elementFormDefault`/`form`. A path step is only reported
//! as missing when the WSDL says definitely what is there: after `xs:any`, an untyped element,
//! `xs:anyType`, or a type the WSDL does not define (imported), the rest of the path is
//! accepted unchecked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::Path;

use super::xml::{self, Element, Name};

const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const WSDL2_NS: &str = "http://www.w3.org/ns/wsdl";
const WSDL_SOAP11_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const WSDL_SOAP12_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
const XS_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// How deep type derivations and group references are followed (they may be circular).
const MAX_TYPE_DEPTH: usize = 32;

/// How many alternatives a message lists.
const MAX_LISTED: usize = 12;

/// A parsed WSDL 1.1 document.
#[derive(Debug)]
pub(crate) struct Wsdl {
    root: Element,
}

/// One operation of a connector file, as the WSDL check needs it.
#[derive(Debug)]
pub(crate) struct OperationCheck<'a> {
    /// The operation's name in the connector file.
    pub(crate) name: &'a str,
    /// Its SOAP action, if set.
    pub(crate) action: Option<&'a str>,
    /// The first element of its body template.
    pub(crate) body_root: Option<&'a Name>,
    /// The `select` path.
    pub(crate) select: &'a [Name],
    /// The `lists` paths, relative to `select`.
    pub(crate) lists: &'a [Vec<Name>],
}

/// An operation's batch form (its list operation), as the WSDL check needs it.
#[derive(Debug)]
pub(crate) struct BatchCheck<'a> {
    /// The operation's name in the connector file.
    pub(crate) name: &'a str,
    /// The list operation's SOAP action, if set.
    pub(crate) action: Option<&'a str>,
    /// The first element of the batch body.
    pub(crate) body_root: Option<&'a Name>,
    /// The path from inside `soap:Body` to the items.
    pub(crate) items: &'a [Name],
    /// The path from an item to its key.
    pub(crate) key: &'a [Name],
    /// The path from an item to what is selected for its key (empty: the item itself).
    pub(crate) select: &'a [Name],
    /// The operation's `lists` paths, relative to what is selected.
    pub(crate) lists: &'a [Vec<Name>],
}

/// Which key of the operation (or of its batch form) a problem is about, so it can be
/// reported at that line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The operation as a whole (its `action`).
    Operation,
    /// `body`.
    Body,
    /// `select`.
    Select,
    /// The `lists` entry with this index.
    List(usize),
    /// A batch's `items`.
    Items,
    /// A batch's `match`.
    Match,
}

/// A mismatch between an operation and the WSDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Where to report it.
    pub(crate) target: Target,
    /// What is missing and what the WSDL has there.
    pub(crate) message: String,
}

impl Wsdl {
    /// Reads and parses a WSDL 1.1 file; the error is a sentence for a diagnostic.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path)
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(xml::MAX_XML_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        Self::parse(&bytes)
    }

    /// Parses WSDL text.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let root = xml::parse(bytes).map_err(|error| format!("is not usable XML: {error}"))?;
        if root.name.is(WSDL2_NS, "description") {
            return Err("WSDL 2.0 is not supported; use a WSDL 1.1 `definitions` file".to_string());
        }
        if !root.name.is(WSDL_NS, "definitions") {
            return Err(format!(
                "the root element is `{}`, not WSDL 1.1 `definitions` in `{WSDL_NS}`",
                root.qualified_name()
            ));
        }
        Ok(Self { root })
    }

    /// Every mismatch between `check` and this WSDL; `names` writes a name as the connector
    /// file would.
    pub(crate) fn verify(
        &self,
        check: &OperationCheck<'_>,
        names: &dyn Fn(&Name) -> String,
    ) -> Vec<Problem> {
        let index = Index::new(&self.root);
        let mut problems = Vec::new();
        index.check_request(check, names, &mut problems);
        match index.walk(None, check.select, names) {
            Err(message) => problems.push(Problem {
                target: Target::Select,
                message: format!("`select`: {message}"),
            }),
            Ok(Some(selected)) => index.check_lists(selected, check.lists, names, &mut problems),
            Ok(None) => {}
        }
        problems
    }

    /// Every mismatch between an operation's batch form and this WSDL; `names` writes a name
    /// as the connector file would.
    pub(crate) fn verify_batch(
        &self,
        check: &BatchCheck<'_>,
        names: &dyn Fn(&Name) -> String,
    ) -> Vec<Problem> {
        let index = Index::new(&self.root);
        let mut problems = Vec::new();
        let request = OperationCheck {
            name: check.name,
            action: check.action,
            body_root: check.body_root,
            select: &[],
            lists: &[],
        };
        index.check_request(&request, names, &mut problems);
        let item = match index.walk(None, check.items, names) {
            Err(message) => {
                problems.push(Problem {
                    target: Target::Items,
                    message: format!("`items`: {message}"),
                });
                return problems;
            }
            Ok(None) => return problems,
            Ok(Some(item)) => item,
        };
        if let Err(message) = index.walk(Some(item), check.key, names) {
            problems.push(Problem {
                target: Target::Match,
                message: format!("`match` (relative to `items`): {message}"),
            });
        }
        match index.walk(Some(item), check.select, names) {
            Err(message) => problems.push(Problem {
                target: Target::Select,
                message: format!("`select` (relative to `items`): {message}"),
            }),
            Ok(Some(selected)) => index.check_lists(selected, check.lists, names, &mut problems),
            Ok(None) => {}
        }
        problems
    }
}

/// `` `a`, `b`, `c` `` (sorted, at most [`MAX_LISTED`]), or "none".
fn listing(items: impl Iterator<Item = String>) -> String {
    join_limited(items.map(|i| format!("`{i}`")))
}

/// Items joined by commas (sorted, at most [`MAX_LISTED`]), or "none".
fn join_limited(items: impl Iterator<Item = String>) -> String {
    let items: BTreeSet<String> = items.collect();
    if items.is_empty() {
        return "none".to_string();
    }
    let mut shown: Vec<String> = items.iter().take(MAX_LISTED).cloned().collect();
    if items.len() > MAX_LISTED {
        shown.push(format!("… {} more", items.len() - MAX_LISTED));
    }
    shown.join(", ")
}

/// An XML Schema declaration and the schema it sits in.
#[derive(Debug, Clone, Copy)]
struct Decl<'a> {
    node: &'a Element,
    schema: Schema<'a>,
}

/// What a declaration needs from its `xs:schema`.
#[derive(Debug, Clone, Copy)]
struct Schema<'a> {
    target_namespace: Option<&'a str>,
    qualified: bool,
}

/// What an element may contain.
enum Content<'a> {
    /// Child elements (with `open` after an `xs:any`).
    Children {
        children: Vec<(Name, Option<Decl<'a>>)>,
        open: bool,
    },
    /// Text only.
    Simple,
    /// Not known from this WSDL.
    Unknown,
}

/// The parts of a WSDL the checks look things up in.
struct Index<'a> {
    elements: BTreeMap<Name, Decl<'a>>,
    complex_types: BTreeMap<Name, Decl<'a>>,
    simple_types: BTreeSet<Name>,
    groups: BTreeMap<Name, Decl<'a>>,
    /// Binding operation name → soapAction.
    actions: Vec<(&'a str, &'a str)>,
    /// portType operation name → its input message.
    port_operations: Vec<(&'a str, Option<Name>)>,
    /// Message name → its parts' `element=`s.
    messages: BTreeMap<Name, Vec<Name>>,
}

fn wsdl(local: &str) -> Name {
    Name::new(Some(WSDL_NS), local)
}

fn xs(local: &str) -> Name {
    Name::new(Some(XS_NS), local)
}

impl<'a> Index<'a> {
    fn new(root: &'a Element) -> Self {
        let mut index = Self {
            elements: BTreeMap::new(),
            complex_types: BTreeMap::new(),
            simple_types: BTreeSet::new(),
            groups: BTreeMap::new(),
            actions: Vec::new(),
            port_operations: Vec::new(),
            messages: BTreeMap::new(),
        };
        let tns = root.attr("targetNamespace");
        for section in root.elements() {
            if section.name == wsdl("types") {
                for schema in section.elements().filter(|e| e.name == xs("schema")) {
                    index.add_schema(schema);
                }
            } else if section.name == wsdl("message") {
                let Some(name) = section.attr("name") else {
                    continue;
                };
                let parts = section
                    .elements()
                    .filter(|e| e.name == wsdl("part"))
                    .filter_map(|part| part.attr("element").and_then(|q| part.resolve_qname(q)))
                    .collect();
                index.messages.insert(Name::new(tns, name), parts);
            } else if section.name == wsdl("portType") {
                for operation in section.elements().filter(|e| e.name == wsdl("operation")) {
                    let Some(name) = operation.attr("name") else {
                        continue;
                    };
                    let input = operation.child(&wsdl("input")).and_then(|input| {
                        input.attr("message").and_then(|q| input.resolve_qname(q))
                    });
                    index.port_operations.push((name, input));
                }
            } else if section.name == wsdl("binding") {
                for operation in section.elements().filter(|e| e.name == wsdl("operation")) {
                    let Some(name) = operation.attr("name") else {
                        continue;
                    };
                    for soap in operation.elements().filter(|e| {
                        e.name.is(WSDL_SOAP11_NS, "operation")
                            || e.name.is(WSDL_SOAP12_NS, "operation")
                    }) {
                        if let Some(action) = soap.attr("soapAction") {
                            index.actions.push((name, action));
                        }
                    }
                }
            }
        }
        index
    }

    fn add_schema(&mut self, schema: &'a Element) {
        let info = Schema {
            target_namespace: schema.attr("targetNamespace").filter(|t| !t.is_empty()),
            qualified: schema.attr("elementFormDefault") == Some("qualified"),
        };
        for item in schema.elements() {
            let Some(name) = item.attr("name") else {
                continue;
            };
            let key = Name::new(info.target_namespace, name);
            let decl = Decl {
                node: item,
                schema: info,
            };
            if item.name == xs("element") {
                self.elements.insert(key, decl);
            } else if item.name == xs("complexType") {
                self.complex_types.insert(key, decl);
            } else if item.name == xs("simpleType") {
                self.simple_types.insert(key);
            } else if item.name == xs("group") {
                self.groups.insert(key, decl);
            }
        }
    }

    /// Checks the action (or name) and the body's root element.
    fn check_request(
        &self,
        check: &OperationCheck<'_>,
        names: &dyn Fn(&Name) -> String,
        problems: &mut Vec<Problem>,
    ) {
        let operation = self.check_action(check, names, problems);
        let Some(root) = check.body_root else {
            return;
        };
        if !self.elements.contains_key(root) {
            problems.push(Problem {
                target: Target::Body,
                message: format!(
                    "the body's root element `{}` is not a global element of its schemas ({})",
                    names(root),
                    listing(self.elements.keys().map(names))
                ),
            });
        } else if let Some(operation) = operation {
            let inputs = self.input_elements(operation);
            if !inputs.is_empty() && !inputs.contains(root) {
                problems.push(Problem {
                    target: Target::Body,
                    message: format!(
                        "the body's root element `{}` is not the input of WSDL operation `{operation}`, which takes {}",
                        names(root),
                        listing(inputs.iter().map(names))
                    ),
                });
            }
        }
    }

    /// Checks each `lists` path from the selected element.
    fn check_lists(
        &self,
        selected: Decl<'a>,
        lists: &[Vec<Name>],
        names: &dyn Fn(&Name) -> String,
        problems: &mut Vec<Problem>,
    ) {
        for (i, list) in lists.iter().enumerate() {
            if let Err(message) = self.walk(Some(selected), list, names) {
                problems.push(Problem {
                    target: Target::List(i),
                    message: format!("`lists` entry (relative to `select`): {message}"),
                });
            }
        }
    }

    /// Checks the action (or name); returns the WSDL operation it names, if one.
    fn check_action(
        &self,
        check: &OperationCheck<'_>,
        names: &dyn Fn(&Name) -> String,
        problems: &mut Vec<Problem>,
    ) -> Option<&'a str> {
        if let Some(action) = check.action
            && !self.actions.is_empty()
        {
            if let Some((operation, _)) = self.actions.iter().find(|(_, a)| *a == action) {
                return Some(operation);
            }
            problems.push(Problem {
                target: Target::Operation,
                message: format!(
                    "no binding operation has `soapAction` `{action}`; the WSDL has {}",
                    join_limited(self.actions.iter().map(|(operation, action)| format!(
                        "`{action}` (operation `{operation}`)"
                    )))
                ),
            });
            return None;
        }
        if let Some((operation, _)) = self.port_operations.iter().find(|(n, _)| *n == check.name) {
            return Some(operation);
        }
        if let Some(root) = check.body_root
            && let Some((operation, _)) = self
                .port_operations
                .iter()
                .find(|(operation, _)| self.input_elements(operation).contains(root))
        {
            return Some(operation);
        }
        problems.push(Problem {
            target: Target::Operation,
            message: format!(
                "neither the operation name `{}` nor the body's root element{} matches a portType operation; the WSDL has {}",
                check.name,
                check
                    .body_root
                    .map(|r| format!(" `{}`", names(r)))
                    .unwrap_or_default(),
                listing(self.port_operations.iter().map(|(n, _)| n.to_string()))
            ),
        });
        None
    }

    /// The `element=`s of the input message of the portType operation `operation`.
    fn input_elements(&self, operation: &str) -> Vec<Name> {
        self.port_operations
            .iter()
            .filter(|(name, _)| *name == operation)
            .filter_map(|(_, input)| input.as_ref())
            .filter_map(|message| self.messages.get(message))
            .flatten()
            .cloned()
            .collect()
    }

    /// Follows `steps` from the global elements (`start` = `None`) or from the children of
    /// `start`. `Ok(Some)` is the last step's declaration, `Ok(None)` means the WSDL cannot
    /// say (the rest was accepted unchecked), `Err` says which step is missing.
    fn walk(
        &self,
        start: Option<Decl<'a>>,
        steps: &[Name],
        names: &dyn Fn(&Name) -> String,
    ) -> Result<Option<Decl<'a>>, String> {
        let mut current = start;
        let mut previous: Option<&Name> = None;
        for (i, step) in steps.iter().enumerate() {
            let position = format!("step {} `{}`", i + 1, names(step));
            let Some(decl) = current else {
                // The first step of an absolute path: a global element.
                match self.elements.get(step) {
                    Some(decl) => {
                        current = Some(*decl);
                        previous = Some(step);
                        continue;
                    }
                    None => {
                        return Err(format!(
                            "{position} is not a global element of the WSDL's schemas; they declare {}",
                            listing(self.elements.keys().map(names))
                        ));
                    }
                }
            };
            let parent = previous.map_or_else(
                || "the selected element".to_string(),
                |p| format!("`{}`", names(p)),
            );
            match self.element_content(decl, 0) {
                Content::Unknown => return Ok(None),
                Content::Simple => {
                    return Err(format!(
                        "{position} cannot be found: {parent} has text content, no child elements"
                    ));
                }
                Content::Children { children, open } => {
                    match children.iter().find(|(name, _)| name == step) {
                        Some((_, Some(child))) => current = Some(*child),
                        Some((_, None)) => return Ok(None),
                        None if open => return Ok(None),
                        None => {
                            return Err(format!(
                                "{position} is not a child of {parent}, which contains {}",
                                listing(children.iter().map(|(name, _)| names(name)))
                            ));
                        }
                    }
                }
            }
            previous = Some(step);
        }
        Ok(current)
    }

    /// What an element declaration may contain.
    fn element_content(&self, decl: Decl<'a>, depth: usize) -> Content<'a> {
        let node = decl.node;
        if let Some(complex) = node.child(&xs("complexType")) {
            return self.complex_content(
                Decl {
                    node: complex,
                    schema: decl.schema,
                },
                depth,
            );
        }
        if node.child(&xs("simpleType")).is_some() {
            return Content::Simple;
        }
        let Some(type_name) = node.attr("type").and_then(|q| node.resolve_qname(q)) else {
            return Content::Unknown;
        };
        if type_name.namespace.as_deref() == Some(XS_NS) {
            return if type_name.local == "anyType" {
                Content::Unknown
            } else {
                Content::Simple
            };
        }
        if let Some(complex) = self.complex_types.get(&type_name) {
            self.complex_content(*complex, depth)
        } else if self.simple_types.contains(&type_name) {
            Content::Simple
        } else {
            Content::Unknown
        }
    }

    /// The children a complex type allows.
    fn complex_content(&self, complex: Decl<'a>, depth: usize) -> Content<'a> {
        if depth > MAX_TYPE_DEPTH {
            return Content::Unknown;
        }
        if complex.node.child(&xs("simpleContent")).is_some() {
            return Content::Simple;
        }
        let mut children = Vec::new();
        let mut open = false;
        let particles_from = match complex.node.child(&xs("complexContent")) {
            None => complex.node,
            Some(derived) => {
                let Some(derivation) = derived
                    .elements()
                    .find(|e| e.name == xs("extension") || e.name == xs("restriction"))
                else {
                    return Content::Unknown;
                };
                if derivation.name == xs("extension") {
                    let base = derivation
                        .attr("base")
                        .and_then(|q| derivation.resolve_qname(q));
                    match base.and_then(|b| self.complex_types.get(&b)) {
                        Some(base) => match self.complex_content(*base, depth + 1) {
                            Content::Children {
                                children: inherited,
                                open: base_open,
                            } => {
                                children.extend(inherited);
                                open |= base_open;
                            }
                            Content::Simple => {}
                            Content::Unknown => return Content::Unknown,
                        },
                        None => return Content::Unknown,
                    }
                }
                derivation
            }
        };
        if !self.particles(
            particles_from,
            complex.schema,
            &mut children,
            &mut open,
            depth,
        ) {
            return Content::Unknown;
        }
        Content::Children { children, open }
    }

    /// Collects the elements of a content model; `false` when part of it cannot be known.
    fn particles(
        &self,
        node: &'a Element,
        schema: Schema<'a>,
        children: &mut Vec<(Name, Option<Decl<'a>>)>,
        open: &mut bool,
        depth: usize,
    ) -> bool {
        for particle in node.elements() {
            if particle.name.namespace.as_deref() != Some(XS_NS) {
                continue;
            }
            match particle.name.local.as_str() {
                "sequence" | "choice" | "all"
                    if !self.particles(particle, schema, children, open, depth) =>
                {
                    return false;
                }
                "element" => {
                    if let Some(reference) =
                        particle.attr("ref").and_then(|q| particle.resolve_qname(q))
                    {
                        let decl = self.elements.get(&reference).copied();
                        children.push((reference, decl));
                    } else if let Some(name) = particle.attr("name") {
                        let qualified = match particle.attr("form") {
                            Some(form) => form == "qualified",
                            None => schema.qualified,
                        };
                        let namespace = if qualified {
                            schema.target_namespace
                        } else {
                            None
                        };
                        children.push((
                            Name::new(namespace, name),
                            Some(Decl {
                                node: particle,
                                schema,
                            }),
                        ));
                    }
                }
                "any" => *open = true,
                "group" => {
                    let group = particle
                        .attr("ref")
                        .and_then(|q| particle.resolve_qname(q))
                        .and_then(|g| self.groups.get(&g));
                    match group {
                        Some(group) if depth < MAX_TYPE_DEPTH => {
                            if !self.particles(group.node, group.schema, children, open, depth + 1)
                            {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DMV: &str = "urn:civicgraph:demo:dmv:v1";

    /// A document/literal WSDL in the style of the motor-vehicle demo.
    pub(crate) const DMV_WSDL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="urn:civicgraph:demo:dmv:v1"
    targetNamespace="urn:civicgraph:demo:dmv:v1">
  <wsdl:types>
    <xs:schema targetNamespace="urn:civicgraph:demo:dmv:v1" elementFormDefault="qualified">
      <xs:element name="GetLicense">
        <xs:complexType><xs:sequence>
          <xs:element name="licenseNumber" type="xs:string"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="GetLicenseResponse">
        <xs:complexType><xs:sequence>
          <xs:element name="license" type="tns:License" minOccurs="0" nillable="true"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:complexType name="Base">
        <xs:sequence><xs:element name="number" type="xs:string"/></xs:sequence>
      </xs:complexType>
      <xs:complexType name="License">
        <xs:complexContent><xs:extension base="tns:Base"><xs:sequence>
          <xs:element name="class" type="xs:string"/>
          <xs:element name="restrictions">
            <xs:complexType><xs:sequence>
              <xs:element name="restriction" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
            </xs:sequence></xs:complexType>
          </xs:element>
          <xs:element ref="tns:extra" minOccurs="0"/>
          <xs:element name="anything" type="xs:anyType"/>
        </xs:sequence></xs:extension></xs:complexContent>
      </xs:complexType>
      <xs:element name="extra"><xs:complexType><xs:sequence><xs:any/></xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="GetLicenseRequest"><wsdl:part name="parameters" element="tns:GetLicense"/></wsdl:message>
  <wsdl:message name="GetLicenseResponse"><wsdl:part name="parameters" element="tns:GetLicenseResponse"/></wsdl:message>
  <wsdl:portType name="DmvPort">
    <wsdl:operation name="GetLicense">
      <wsdl:input message="tns:GetLicenseRequest"/>
      <wsdl:output message="tns:GetLicenseResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="DmvBinding" type="tns:DmvPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetLicense">
      <soap:operation soapAction="urn:civicgraph:demo:dmv:v1#GetLicense"/>
    </wsdl:operation>
  </wsdl:binding>
</wsdl:definitions>"#;

    fn dmv(local: &str) -> Name {
        Name::new(Some(DMV), local)
    }

    fn names(name: &Name) -> String {
        match name.namespace.as_deref() {
            Some(DMV) => format!("dmv:{}", name.local),
            _ => name.local.clone(),
        }
    }

    fn verify(
        action: Option<&str>,
        root: &str,
        select: &[&str],
        lists: &[&[&str]],
    ) -> Vec<Problem> {
        let wsdl = Wsdl::parse(DMV_WSDL.as_bytes()).expect("a valid WSDL");
        let root = dmv(root);
        let select: Vec<Name> = select.iter().map(|s| dmv(s)).collect();
        let lists: Vec<Vec<Name>> = lists
            .iter()
            .map(|l| l.iter().map(|s| dmv(s)).collect())
            .collect();
        wsdl.verify(
            &OperationCheck {
                name: "license",
                action,
                body_root: Some(&root),
                select: &select,
                lists: &lists,
            },
            &names,
        )
    }

    const ACTION: Option<&str> = Some("urn:civicgraph:demo:dmv:v1#GetLicense");

    #[test]
    fn accepts_the_demo_operation_through_extension_refs_and_wildcards() {
        let problems = verify(
            ACTION,
            "GetLicense",
            &["GetLicenseResponse", "license"],
            &[
                &["restrictions", "restriction"],
                &["number"],
                &["extra", "whatever", "deeper"],
                &["anything", "x"],
            ],
        );
        assert_eq!(problems, []);
    }

    #[test]
    fn reports_an_unknown_action_with_what_the_wsdl_has() {
        let problems = verify(
            Some("urn:x#Nope"),
            "GetLicense",
            &["GetLicenseResponse"],
            &[],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].target, Target::Operation);
        assert!(
            problems[0].message.ends_with(
                "the WSDL has `urn:civicgraph:demo:dmv:v1#GetLicense` (operation `GetLicense`)"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn without_an_action_the_body_root_finds_the_operation() {
        assert_eq!(verify(None, "GetLicense", &["GetLicenseResponse"], &[]), []);
        let problems = verify(None, "GetLicenseResponse", &["GetLicenseResponse"], &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].target, Target::Operation);
    }

    #[test]
    fn reports_a_body_root_that_is_not_declared_or_not_the_input() {
        let problems = verify(ACTION, "GetLicens", &["GetLicenseResponse"], &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].target, Target::Body);
        assert!(
            problems[0].message.contains("`dmv:GetLicense`"),
            "{problems:?}"
        );
        let problems = verify(ACTION, "GetLicenseResponse", &["GetLicenseResponse"], &[]);
        assert!(
            problems[0].message.contains("not the input"),
            "{problems:?}"
        );
    }

    #[test]
    fn reports_the_missing_step_and_what_is_there() {
        let problems = verify(
            ACTION,
            "GetLicense",
            &["GetLicenseResponse", "licence"],
            &[],
        );
        assert_eq!(
            problems,
            [Problem {
                target: Target::Select,
                message: "`select`: step 2 `dmv:licence` is not a child of `dmv:GetLicenseResponse`, which contains `dmv:license`".to_string()
            }]
        );
        let problems = verify(
            ACTION,
            "GetLicense",
            &["GetLicenseResponse", "license"],
            &[&["restrictions", "restrictoin"], &["class", "x"]],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].target, Target::List(0));
        assert!(
            problems[0].message.contains("`dmv:restriction`"),
            "{problems:?}"
        );
        assert_eq!(problems[1].target, Target::List(1));
        assert!(problems[1].message.contains("text content"), "{problems:?}");
        let problems = verify(ACTION, "GetLicense", &["Nope"], &[]);
        assert!(
            problems[0].message.contains("not a global element"),
            "{problems:?}"
        );
    }

    #[test]
    fn unqualified_local_elements_are_in_no_namespace() {
        let unqualified = DMV_WSDL.replace(" elementFormDefault=\"qualified\"", "");
        let wsdl = Wsdl::parse(unqualified.as_bytes()).expect("a valid WSDL");
        let select = [dmv("GetLicenseResponse"), Name::new(None, "license")];
        let problems = wsdl.verify(
            &OperationCheck {
                name: "license",
                action: ACTION,
                body_root: Some(&dmv("GetLicense")),
                select: &select,
                lists: &[vec![Name::new(None, "number")]],
            },
            &names,
        );
        assert_eq!(problems, []);
    }

    /// The shipped demo WSDL, which declares the list operations.
    const SHIPPED: &str = include_str!("../../connectors/dmv.wsdl");

    fn verify_batch(
        items: &[&str],
        key: &[&str],
        select: &[&str],
        lists: &[&[&str]],
    ) -> Vec<Problem> {
        let wsdl = Wsdl::parse(SHIPPED.as_bytes()).expect("the shipped WSDL");
        let path = |steps: &[&str]| steps.iter().map(|s| dmv(s)).collect::<Vec<Name>>();
        let lists: Vec<Vec<Name>> = lists.iter().map(|l| path(l)).collect();
        wsdl.verify_batch(
            &BatchCheck {
                name: "vehicles",
                action: Some("urn:civicgraph:demo:dmv:v1#GetVehicleLists"),
                body_root: Some(&dmv("GetVehicleLists")),
                items: &path(items),
                key: &path(key),
                select: &path(select),
                lists: &lists,
            },
            &names,
        )
    }

    #[test]
    fn a_batch_is_walked_from_its_items() {
        let holder = ["GetVehicleListsResponse", "holder"];
        assert_eq!(
            verify_batch(&holder, &["licenseNumber"], &["vehicles", "vehicle"], &[]),
            []
        );
        let targets = |problems: Vec<Problem>| -> Vec<Target> {
            problems.into_iter().map(|p| p.target).collect()
        };
        assert_eq!(
            targets(verify_batch(
                &["GetVehicleListsResponse", "holders"],
                &["licenseNumber"],
                &[],
                &[]
            )),
            [Target::Items]
        );
        assert_eq!(
            targets(verify_batch(
                &holder,
                &["number"],
                &["vehicles", "car"],
                &[]
            )),
            [Target::Match, Target::Select]
        );
        assert_eq!(
            targets(verify_batch(
                &holder,
                &["licenseNumber"],
                &["vehicles", "vehicle"],
                &[&["vin"], &["owner"]]
            )),
            [Target::List(1)]
        );
    }

    #[test]
    fn refuses_documents_that_are_not_wsdl_11_or_not_safe() {
        assert!(Wsdl::parse(b"<x/>").is_err());
        assert!(
            Wsdl::parse(b"<description xmlns=\"http://www.w3.org/ns/wsdl\"/>")
                .err()
                .is_some_and(|e| e.contains("WSDL 2.0"))
        );
        assert!(
            Wsdl::parse(b"<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><d>&x;</d>")
                .err()
                .is_some_and(|e| e.contains("DTD"))
        );
        assert!(
            Wsdl::load(Path::new("/nonexistent/dmv.wsdl"))
                .err()
                .is_some_and(|e| e.contains("cannot read"))
        );
    }
}
