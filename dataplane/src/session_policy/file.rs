//! What a file is: its type from the first bytes (and, for zip containers,
//! the OOXML part names), its sensitivity label (OOXML
//! `docProps/custom.xml` or PDF metadata `MSIP_Label_<id>_Name`), whether
//! it is encrypted, and its inspectable text (plain text as is; OOXML
//! documents inflated and stripped of markup), all bounded.

use std::io::Read;

/// A detected file type (see `palisade_schema::session::FILE_TYPES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Pdf,
    Docx,
    Xlsx,
    Pptx,
    Zip,
    Ole,
    Png,
    Jpeg,
    Gif,
    Webp,
    Executable,
    Gzip,
    Text,
    Unknown,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Pdf => "pdf",
            FileType::Docx => "docx",
            FileType::Xlsx => "xlsx",
            FileType::Pptx => "pptx",
            FileType::Zip => "zip",
            FileType::Ole => "ole",
            FileType::Png => "png",
            FileType::Jpeg => "jpeg",
            FileType::Gif => "gif",
            FileType::Webp => "webp",
            FileType::Executable => "executable",
            FileType::Gzip => "gzip",
            FileType::Text => "text",
            FileType::Unknown => "unknown",
        }
    }

    /// True when a policy's `file_types` entry names this type (directly
    /// or as its family: `ooxml`, `image`).
    pub fn is(self, name: &str) -> bool {
        name == self.as_str()
            || (name == "ooxml" && matches!(self, FileType::Docx | FileType::Xlsx | FileType::Pptx))
            || (name == "image"
                && matches!(
                    self,
                    FileType::Png | FileType::Jpeg | FileType::Gif | FileType::Webp
                ))
    }

    fn is_ooxml(self) -> bool {
        matches!(self, FileType::Docx | FileType::Xlsx | FileType::Pptx)
    }
}

/// Why a file's content could not be inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uninspectable {
    TooBig,
    TooManyCharacters,
    Encrypted,
    Corrupt,
    /// A content coding the inspector does not undo (unknown, stacked).
    Encoded,
    /// The core's budget for held files is spent.
    Busy,
}

impl Uninspectable {
    pub fn as_str(self) -> &'static str {
        match self {
            Uninspectable::TooBig => "too big",
            Uninspectable::TooManyCharacters => "too many characters",
            Uninspectable::Encrypted => "encrypted",
            Uninspectable::Corrupt => "corrupt",
            Uninspectable::Encoded => "content-encoded",
            Uninspectable::Busy => "proxy busy (held-file budget spent)",
        }
    }
}

/// The type from the magic bytes alone (zip containers: `Zip`).
pub fn sniff(bytes: &[u8]) -> FileType {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if starts(b"%PDF-") {
        FileType::Pdf
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        FileType::Zip
    } else if starts(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        FileType::Ole
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        FileType::Png
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        FileType::Jpeg
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        FileType::Gif
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        FileType::Webp
    } else if starts(b"MZ")
        || starts(b"\x7fELF")
        || starts(&[0xFE, 0xED, 0xFA, 0xCE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCF])
        || starts(&[0xCE, 0xFA, 0xED, 0xFE])
        || starts(&[0xCF, 0xFA, 0xED, 0xFE])
        || starts(&[0xCA, 0xFE, 0xBA, 0xBE])
        || starts(b"#!")
    {
        FileType::Executable
    } else if starts(&[0x1F, 0x8B]) {
        FileType::Gzip
    } else if looks_like_text(&bytes[..bytes.len().min(4096)]) {
        FileType::Text
    } else {
        FileType::Unknown
    }
}

/// No NUL and valid UTF-8 (a sequence cut at the end of the sample is
/// fine): text, CSV, JSON, HTML, XML.
fn looks_like_text(sample: &[u8]) -> bool {
    if sample.contains(&0) {
        return false;
    }
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > sample.len(),
    }
}

/// Everything the session policies may ask about one file.
#[derive(Debug, Default)]
pub struct Examined {
    pub file_type: Option<FileType>,
    pub label: Option<String>,
    pub encrypted: bool,
    pub corrupt: bool,
}

/// Most bytes inflated from one zip entry (zip bombs stop here).
fn entry_budget(max_bytes: u64) -> u64 {
    max_bytes.max(1024 * 1024)
}

/// Type, label and encryption of a whole file.
pub fn examine(bytes: &[u8], max_bytes: u64) -> Examined {
    let mut e = Examined {
        file_type: Some(sniff(bytes)),
        ..Default::default()
    };
    match e.file_type {
        Some(FileType::Zip) => match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            Ok(mut z) => {
                let has = |z: &zip::ZipArchive<_>, n: &str| z.index_for_name(n).is_some();
                if has(&z, "[Content_Types].xml") {
                    e.file_type = Some(if has(&z, "word/document.xml") {
                        FileType::Docx
                    } else if has(&z, "xl/workbook.xml") {
                        FileType::Xlsx
                    } else if has(&z, "ppt/presentation.xml") {
                        FileType::Pptx
                    } else {
                        FileType::Zip
                    });
                }
                e.encrypted = (0..z.len()).any(|i| z.by_index_raw(i).is_ok_and(|f| f.encrypted()));
                if !e.encrypted {
                    if let Some(xml) =
                        read_entry(&mut z, "docProps/custom.xml", entry_budget(max_bytes))
                    {
                        e.label = ooxml_label(&xml);
                    }
                }
            }
            Err(_) => e.corrupt = true,
        },
        // An encrypted OOXML document is an OLE compound file holding an
        // `EncryptedPackage` stream (MS-OFFCRYPTO §2.3.4.4): names are
        // UTF-16LE in the directory.
        Some(FileType::Ole) => {
            let name: Vec<u8> = "EncryptedPackage".bytes().flat_map(|b| [b, 0]).collect();
            e.encrypted = memchr::memmem::find(bytes, &name).is_some();
        }
        Some(FileType::Pdf) => {
            e.label = pdf_label(bytes);
            // The trailer's /Encrypt entry (ISO 32000-1 §7.6.1).
            e.encrypted = memchr::memmem::find(bytes, b"/Encrypt").is_some();
        }
        _ => {}
    }
    e
}

fn read_entry<R: std::io::Read + std::io::Seek>(
    z: &mut zip::ZipArchive<R>,
    name: &str,
    budget: u64,
) -> Option<Vec<u8>> {
    let f = z.by_name(name).ok()?;
    let mut out = Vec::new();
    f.take(budget).read_to_end(&mut out).ok()?;
    Some(out)
}

/// The value of the first `MSIP_Label_<id>_Name` custom property.
pub fn ooxml_label(custom_xml: &[u8]) -> Option<String> {
    let mut rest = custom_xml;
    while let Some(at) = memchr::memmem::find(rest, b"MSIP_Label_") {
        rest = &rest[at..];
        let tag_end = memchr::memchr(b'>', rest)?;
        let name_end = memchr::memchr(b'"', rest).unwrap_or(tag_end);
        if rest[..name_end].ends_with(b"_Name") {
            let body = &rest[tag_end + 1..];
            let open = memchr::memchr(b'>', body)? + 1;
            let close = memchr::memchr(b'<', &body[open..])? + open;
            return Some(xml_unescape(&body[open..close]));
        }
        rest = &rest[tag_end..];
    }
    None
}

/// A PDF's label: `/MSIP_Label_<id>_Name (Text)` in the document
/// information dictionary, or the XMP element `…MSIP_Label_<id>_Name>Text<`.
pub fn pdf_label(pdf: &[u8]) -> Option<String> {
    let mut rest = pdf;
    while let Some(at) = memchr::memmem::find(rest, b"MSIP_Label_") {
        rest = &rest[at + 11..];
        let end = rest
            .iter()
            .take(64)
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))?;
        if !rest[..end].ends_with(b"_Name") {
            continue;
        }
        let after = &rest[end..];
        let trimmed = after.trim_ascii_start();
        let (open, close) = match trimmed.first() {
            Some(b'(') => (b'(', b')'),
            Some(b'>') => (b'>', b'<'),
            _ => continue,
        };
        let body = &trimmed[1..];
        let stop = memchr::memchr(close, body)?;
        let _ = open;
        return Some(xml_unescape(&body[..stop]));
    }
    None
}

fn xml_unescape(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// The text of an OOXML document: `word/document.xml`,
/// `xl/sharedStrings.xml` and worksheets, `ppt/slides/*.xml`, markup
/// removed; inflated bytes bounded by `max_bytes`.
pub fn ooxml_text(bytes: &[u8], max_bytes: u64) -> Result<Vec<u8>, Uninspectable> {
    let mut z =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| Uninspectable::Corrupt)?;
    let names: Vec<String> = z
        .file_names()
        .filter(|n| {
            *n == "word/document.xml"
                || *n == "xl/sharedStrings.xml"
                || (n.starts_with("xl/worksheets/") && n.ends_with(".xml"))
                || (n.starts_with("ppt/slides/") && n.ends_with(".xml"))
        })
        .map(str::to_string)
        .collect();
    let mut text = Vec::new();
    let mut left = max_bytes;
    for name in names {
        let f = z.by_name(&name).map_err(|_| Uninspectable::Corrupt)?;
        if f.encrypted() {
            return Err(Uninspectable::Encrypted);
        }
        let mut xml = Vec::new();
        f.take(left + 1)
            .read_to_end(&mut xml)
            .map_err(|_| Uninspectable::Corrupt)?;
        if xml.len() as u64 > left {
            return Err(Uninspectable::TooBig);
        }
        left -= xml.len() as u64;
        strip_markup(&xml, &mut text);
        text.push(b'\n');
    }
    Ok(text)
}

/// Appends the character data of `xml` (tags dropped; each closing
/// paragraph/cell tag becomes a space so adjacent runs do not merge) with
/// the five predefined entities decoded.
fn strip_markup(xml: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < xml.len() {
        match memchr::memchr(b'<', &xml[i..]) {
            Some(lt) => {
                push_unescaped(&xml[i..i + lt], out);
                let tag_start = i + lt;
                let Some(gt) = memchr::memchr(b'>', &xml[tag_start..]) else {
                    return;
                };
                let tag = &xml[tag_start..tag_start + gt];
                // Runs (<w:t>) inside a paragraph join without a space;
                // paragraphs, cells and values are separated.
                if tag.starts_with(b"</w:p")
                    || tag.starts_with(b"</a:p")
                    || tag.starts_with(b"</si")
                    || tag.starts_with(b"</v")
                    || tag.starts_with(b"</c")
                    || tag.starts_with(b"</w:tc")
                {
                    out.push(b' ');
                }
                i = tag_start + gt + 1;
            }
            None => {
                push_unescaped(&xml[i..], out);
                return;
            }
        }
    }
}

fn push_unescaped(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    while let Some(amp) = memchr::memchr(b'&', rest) {
        out.extend_from_slice(&rest[..amp]);
        let tail = &rest[amp..];
        let (ch, len) = [
            (&b"&lt;"[..], b'<'),
            (b"&gt;", b'>'),
            (b"&amp;", b'&'),
            (b"&quot;", b'"'),
            (b"&apos;", b'\''),
        ]
        .iter()
        .find(|(e, _)| tail.starts_with(e))
        .map_or((b'&', 1), |(e, c)| (*c, e.len()));
        out.push(ch);
        rest = &tail[len..];
    }
    out.extend_from_slice(rest);
}

/// Undoes a response's content coding, at most `max` decoded bytes (a
/// decompression bomb stops there).
pub fn decode_bounded(
    coding: crate::rewrite::codec::Coding,
    bytes: &[u8],
    max: u64,
) -> Result<Vec<u8>, Uninspectable> {
    use crate::rewrite::codec::Coding;
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        // HTTP "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); some servers
        // send raw deflate: a zlib stream starts with CMF 0x78.
        Coding::Deflate if bytes.first() == Some(&0x78) => {
            Box::new(flate2::read::ZlibDecoder::new(bytes))
        }
        Coding::Deflate => Box::new(flate2::read::DeflateDecoder::new(bytes)),
        Coding::Br => Box::new(brotli::Decompressor::new(bytes, 4096)),
        Coding::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(bytes).map_err(|_| Uninspectable::Corrupt)?)
        }
    };
    let mut out = Vec::new();
    reader
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|_| Uninspectable::Corrupt)?;
    if out.len() as u64 > max {
        return Err(Uninspectable::TooBig);
    }
    Ok(out)
}

/// The text to inspect: OOXML text, or the bytes of a text file;
/// `Ok(None)` for types whose content is not inspected (images, PDFs…).
pub fn inspectable_text<'b>(
    bytes: &'b [u8],
    e: &Examined,
    max_bytes: u64,
) -> Result<Option<std::borrow::Cow<'b, [u8]>>, Uninspectable> {
    if e.encrypted {
        return Err(Uninspectable::Encrypted);
    }
    if e.corrupt {
        return Err(Uninspectable::Corrupt);
    }
    match e.file_type {
        Some(t) if t.is_ooxml() => ooxml_text(bytes, max_bytes).map(|t| Some(t.into())),
        Some(FileType::Text) => Ok(Some(bytes.into())),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_type() {
        assert_eq!(sniff(b"%PDF-1.7\n"), FileType::Pdf);
        assert_eq!(sniff(b"MZ\x90\x00"), FileType::Executable);
        assert_eq!(sniff(b"\x7fELF\x02"), FileType::Executable);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), FileType::Png);
        assert_eq!(sniff(b"name,card\nx,4111\n"), FileType::Text);
        assert_eq!(sniff(b"\x00\x01\x02binary"), FileType::Unknown);
        assert!(
            FileType::Docx.is("ooxml") && FileType::Gif.is("image") && !FileType::Zip.is("ooxml")
        );
    }

    #[test]
    fn labels_come_from_custom_properties_and_pdf_metadata() {
        let custom = br#"<Properties><property fmtid="{D5}" pid="2" name="MSIP_Label_1234-ab_Enabled"><vt:lpwstr>true</vt:lpwstr></property><property fmtid="{D5}" pid="3" name="MSIP_Label_1234-ab_Name"><vt:lpwstr>Highly Confidential</vt:lpwstr></property></Properties>"#;
        assert_eq!(ooxml_label(custom).as_deref(), Some("Highly Confidential"));
        assert_eq!(ooxml_label(b"<Properties/>"), None);
        let pdf = b"%PDF-1.7\n1 0 obj << /MSIP_Label_77-aa_Enabled (true) /MSIP_Label_77-aa_Name (Confidential) >> endobj";
        assert_eq!(pdf_label(pdf).as_deref(), Some("Confidential"));
        let xmp = b"%PDF-1.4 <pdfx:MSIP_Label_9_Name>Secret &amp; Co</pdfx:MSIP_Label_9_Name>";
        assert_eq!(pdf_label(xmp).as_deref(), Some("Secret & Co"));
    }

    #[test]
    fn markup_is_stripped_and_entities_decoded() {
        let mut out = Vec::new();
        strip_markup(b"<w:p><w:r><w:t>4111 1111</w:t></w:r><w:r><w:t> 1111 1111</w:t></w:r></w:p><w:p><w:t>a &amp; b</w:t></w:p>", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "4111 1111 1111 1111 a & b "
        );
    }
}
