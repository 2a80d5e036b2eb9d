//! Sample documents for session-control tests and the demo, built for
//! real: OOXML files are zip archives with the parts Office writes
//! (`word/document.xml`, `xl/sharedStrings.xml`, `docProps/custom.xml`
//! with a Microsoft Information Protection label), a PDF carries its label
//! in the document information dictionary, an encrypted document is the
//! OLE compound file Office produces, an executable starts with `MZ`.
//! `bench origin` serves them under `/samples/NAME`.

use std::io::Write;

/// A payment card number that passes the Luhn check.
pub const CARD: &str = "4111 1111 1111 1111";
/// One digit off: fails the Luhn check.
pub const NOT_A_CARD: &str = "4111 1111 1111 1112";

const CONTENT_TYPES: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#;

/// A zip archive of `(name, content)` entries, deflated.
pub fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        // Writing into memory cannot fail but for a bug in the archive.
        let _ = w.start_file(*name, options);
        let _ = w.write_all(content.as_bytes());
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// `docProps/custom.xml` with the sensitivity label `label`.
pub fn custom_props(label: &str) -> String {
    format!(
        r#"<Properties><property fmtid="{{D5CDD505}}" pid="2" name="MSIP_Label_0f1e2d3c-aaaa_Enabled"><vt:lpwstr>true</vt:lpwstr></property><property fmtid="{{D5CDD505}}" pid="3" name="MSIP_Label_0f1e2d3c-aaaa_Name"><vt:lpwstr>{label}</vt:lpwstr></property></Properties>"#
    )
}

/// A Word document whose body holds `text`, optionally labelled.
pub fn docx(text: &str, label: Option<&str>) -> Vec<u8> {
    let body = format!(
        r#"<w:document><w:body><w:p><w:r><w:t>Quarterly figures</w:t></w:r></w:p><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"#
    );
    let props = label.map(custom_props);
    let mut entries = vec![
        ("[Content_Types].xml", CONTENT_TYPES),
        ("word/document.xml", body.as_str()),
    ];
    if let Some(p) = &props {
        entries.push(("docProps/custom.xml", p));
    }
    zip_of(&entries)
}

/// An Excel workbook, optionally labelled.
pub fn xlsx(label: Option<&str>) -> Vec<u8> {
    let props = label.map(custom_props);
    let mut entries = vec![
        ("[Content_Types].xml", CONTENT_TYPES),
        ("xl/workbook.xml", "<workbook/>"),
        ("xl/sharedStrings.xml", "<sst><si><t>budget</t></si></sst>"),
    ];
    if let Some(p) = &props {
        entries.push(("docProps/custom.xml", p));
    }
    zip_of(&entries)
}

/// A PDF labelled `label` in its document information dictionary.
pub fn pdf(label: &str) -> Vec<u8> {
    format!("%PDF-1.7\n1 0 obj << /Title (Plan) /MSIP_Label_77aa_Enabled (true) /MSIP_Label_77aa_Name ({label}) >> endobj\ntrailer << /Info 1 0 R >>\n%%EOF\n").into_bytes()
}

/// What an encrypted OOXML document looks like: an OLE compound file
/// holding an `EncryptedPackage` stream (MS-OFFCRYPTO).
pub fn encrypted_docx() -> Vec<u8> {
    let mut v = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    v.resize(512, 0);
    v.extend("EncryptedPackage".bytes().flat_map(|b| [b, 0]));
    v.resize(2048, 0xAB);
    v
}

/// A Windows executable's first bytes and some code-like filler.
pub fn executable() -> Vec<u8> {
    let mut v = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    v.extend((0..4096u32).map(|i| (i * 7 % 256) as u8));
    v
}

/// The samples `bench origin` serves under `/samples/NAME`.
pub fn named(name: &str) -> Option<Vec<u8>> {
    Some(match name {
        "cards.csv" => format!("name,card\nalice,{CARD}\nbob,5500 0000 0000 0004\n").into_bytes(),
        "clean.csv" => format!("name,card\nalice,{NOT_A_CARD}\n").into_bytes(),
        "cards.docx" => docx(&format!("Card on file: {CARD}"), None),
        "clean.docx" => docx("Nothing sensitive here.", None),
        "confidential.docx" => docx("Merger plan: do not share.", Some("Confidential")),
        "public.docx" => docx("Lunch menu.", Some("Public")),
        "budget.xlsx" => xlsx(Some("Confidential")),
        "plan.pdf" => pdf("Confidential"),
        "secret.docx" => encrypted_docx(),
        "setup.exe" => executable(),
        _ => return None,
    })
}
