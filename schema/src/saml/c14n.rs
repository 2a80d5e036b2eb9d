//! Exclusive XML canonicalisation without comments
//! (`http://www.w3.org/2001/10/xml-exc-c14n#`, W3C Recommendation of 18 July
//! 2002), over a parsed [`roxmltree`] tree: the bytes an XML signature's
//! digest and signature are computed over.
//!
//! Only what a signed SAML message needs: one element subtree (the signed
//! element, or `SignedInfo`), minus at most one excluded descendant (the
//! enveloped `Signature`, §6.6.4 of XML Signature), with an optional
//! `InclusiveNamespaces PrefixList`. Namespace declarations are rendered
//! where a prefix is visibly utilized (exc-c14n §3) and the nearest output
//! ancestor has not rendered the same binding; `xml:` attributes are not
//! inherited (exc-c14n §3, unlike inclusive c14n).
//!
//! The tree does not keep prefixes, so they are read back from the
//! source text at each element's and attribute's position.

use roxmltree::{Node, NodeType};

/// The namespace of the `xml:` prefix (Namespaces in XML §3).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Canonicalises `apex` and its descendants, leaving out `exclude` (and
/// its descendants) when given. `inclusive` is the `PrefixList` (`#default`
/// for the default namespace).
pub fn canonicalize(
    apex: Node<'_, '_>,
    exclude: Option<Node<'_, '_>>,
    inclusive: &[&str],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(apex.range().len());
    // The bindings rendered by output ancestors, innermost last; the
    // default namespace starts as "no namespace" (exc-c14n §3, the
    // `xmlns=""` rule).
    let mut rendered: Vec<(String, String)> = vec![(String::new(), String::new())];
    render(apex, exclude, inclusive, &mut rendered, &mut out);
    out
}

fn render<'a, 'i>(
    node: Node<'a, 'i>,
    exclude: Option<Node<'_, '_>>,
    inclusive: &[&str],
    rendered: &mut Vec<(String, String)>,
    out: &mut Vec<u8>,
) {
    if exclude == Some(node) {
        return;
    }
    match node.node_type() {
        NodeType::Element => {}
        NodeType::Text => {
            escape_text(node.text().unwrap_or(""), out);
            return;
        }
        NodeType::PI => {
            if let Some(pi) = node.pi() {
                out.extend_from_slice(b"<?");
                out.extend_from_slice(pi.target.as_bytes());
                if let Some(v) = pi.value.filter(|v| !v.is_empty()) {
                    out.push(b' ');
                    out.extend_from_slice(v.as_bytes());
                }
                out.extend_from_slice(b"?>");
            }
            return;
        }
        // Comments are left out (the "without comments" variant); the
        // root is never an apex here.
        NodeType::Comment | NodeType::Root => return,
    }
    let qname = element_qname(node);
    let depth = rendered.len();

    // The prefixes to consider: the element's, its attributes' (not
    // `xml:`), and the inclusive ones in scope (c14n §2.3).
    let mut prefixes: Vec<&'i str> = vec![prefix_of(qname)];
    let mut attrs: Vec<(&'a str, &'i str, &'i str, &'a str)> = Vec::new(); // (uri, local, qname, value)
    let text = node.document().input_text();
    for a in node.attributes() {
        let a_qname = &text[a.range_qname()];
        let a_prefix = prefix_of(a_qname);
        if !a_prefix.is_empty() && a_prefix != "xml" {
            prefixes.push(a_prefix);
        }
        attrs.push((a.namespace().unwrap_or(""), a.name(), a_qname, a.value()));
    }
    for p in inclusive {
        let p = if *p == "#default" { "" } else { p };
        if p == "xml" || !(p.is_empty() || lookup(node, p).is_some()) {
            continue;
        }
        prefixes.push(static_prefix(node, p));
    }
    // Namespace declarations to render, as (prefix, uri).
    let mut decls: Vec<(&str, &str)> = Vec::new();
    for p in prefixes {
        if decls.iter().any(|(q, _)| *q == p) {
            continue;
        }
        let current = rendered
            .iter()
            .rev()
            .find(|(q, _)| q == p)
            .map(|(_, u)| u.as_str());
        match lookup(node, p) {
            Some(uri) if current != Some(uri) => decls.push((p, uri)),
            // An unprefixed element outside any default namespace, below
            // one that rendered a default: `xmlns=""`.
            None if p.is_empty() && current.is_some_and(|u| !u.is_empty()) => decls.push(("", "")),
            _ => {}
        }
    }
    decls.sort_by(|a, b| a.0.cmp(b.0));
    attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

    out.push(b'<');
    out.extend_from_slice(qname.as_bytes());
    for (p, uri) in &decls {
        if p.is_empty() {
            out.extend_from_slice(b" xmlns=\"");
        } else {
            out.extend_from_slice(b" xmlns:");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"=\"");
        }
        escape_attr(uri, out);
        out.push(b'"');
        rendered.push((p.to_string(), uri.to_string()));
    }
    for (_, _, qname, value) in &attrs {
        out.push(b' ');
        out.extend_from_slice(qname.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_attr(value, out);
        out.push(b'"');
    }
    out.push(b'>');
    for child in node.children() {
        render(child, exclude, inclusive, rendered, out);
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(qname.as_bytes());
    out.push(b'>');
    rendered.truncate(depth);
}

/// The qualified name of an element as written in the source.
pub fn element_qname<'i>(node: Node<'_, 'i>) -> &'i str {
    let text = node.document().input_text();
    let start = node.range().start + 1;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    &rest[..end]
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// The namespace `prefix` ("" for the default) is bound to at `node`.
fn lookup<'a>(node: Node<'a, '_>, prefix: &str) -> Option<&'a str> {
    if prefix == "xml" {
        return Some(XML_NS);
    }
    node.namespaces()
        .find(|ns| ns.name().unwrap_or("") == prefix)
        .map(|ns| ns.uri())
        .filter(|uri| !uri.is_empty())
}

/// `prefix` as a string borrowed from the source (as the written ones
/// are).
fn static_prefix<'i>(node: Node<'_, 'i>, prefix: &str) -> &'i str {
    node.namespaces()
        .find_map(|ns| ns.name().filter(|n| *n == prefix))
        .unwrap_or("")
}

/// Text nodes (C14N §2.3): `&`, `<`, `>` and CR escaped.
fn escape_text(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

/// Attribute values (C14N §2.3): `&`, `<`, `"`, TAB, LF and CR escaped.
fn escape_attr(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#x9;"),
            b'\n' => out.extend_from_slice(b"&#xA;"),
            b'\r' => out.extend_from_slice(b"&#xD;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str, inclusive: &[&str]) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let apex = doc.descendants().find(|n| n.has_tag_name("apex")).unwrap();
        String::from_utf8(canonicalize(apex, None, inclusive)).unwrap()
    }

    #[test]
    fn only_visibly_utilized_namespaces_are_rendered() {
        // exc-c14n §2.2's example: the unused `n1` stays out.
        let xml = r#"<n0:local xmlns:n0="foo:bar" xmlns:n3="ftp://example.org"><n1:apex xmlns:n1="http://example.net" xmlns:n2="http://example.org"><n3:stuff/></n1:apex></n0:local>"#;
        assert_eq!(
            c14n(xml, &[]),
            r#"<n1:apex xmlns:n1="http://example.net"><n3:stuff xmlns:n3="ftp://example.org"></n3:stuff></n1:apex>"#
        );
        assert_eq!(
            c14n(xml, &["n2"]),
            r#"<n1:apex xmlns:n1="http://example.net" xmlns:n2="http://example.org"><n3:stuff xmlns:n3="ftp://example.org"></n3:stuff></n1:apex>"#
        );
    }

    #[test]
    fn attributes_sort_by_namespace_then_name_and_values_are_escaped() {
        let xml = "<r xmlns:b=\"urn:b\" xmlns:a=\"urn:a\"><apex z=\"1\" b:y=\"2\" a:x=\"&lt;&quot;&#xA;&#9;\" c=\"&amp;\">t&gt;&#xD;<!-- gone --><?pi  data?><e/></apex></r>";
        assert_eq!(
            c14n(xml, &[]),
            "<apex xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" c=\"&amp;\" z=\"1\" a:x=\"&lt;&quot;&#xA;&#x9;\" b:y=\"2\">t&gt;&#xD;<?pi data?><e></e></apex>"
        );
    }

    #[test]
    fn the_default_namespace_is_rendered_and_undone() {
        let xml = r#"<r xmlns="urn:d"><apex><x xmlns=""><y/></x></apex></r>"#;
        assert_eq!(
            c14n(xml, &[]),
            r#"<apex xmlns="urn:d"><x xmlns=""><y></y></x></apex>"#
        );
        let xml = r#"<r><apex><x/></apex></r>"#;
        assert_eq!(c14n(xml, &[]), "<apex><x></x></apex>");
    }

    #[test]
    fn an_excluded_descendant_is_left_out() {
        let xml = r#"<apex ID="a"><k>1</k><ds:Signature xmlns:ds="urn:ds"><ds:V/></ds:Signature><k>2</k></apex>"#;
        let doc = roxmltree::Document::parse(xml).unwrap();
        let sig = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:ds", "Signature")));
        let out = canonicalize(doc.root_element(), sig, &[]);
        assert_eq!(out, br#"<apex ID="a"><k>1</k><k>2</k></apex>"#);
    }
}
