//! Activity recognition, in one place for session policy and the log:
//! what a request or response *is* — a download, an upload, or one of the
//! app profile's custom activities — and the file name it carries.
//!
//! - a **download** is a response with `Content-Disposition: attachment`,
//!   a media type the profile lists as a download, or a request path the
//!   profile lists;
//! - an **upload** is a multipart body (its first file part names it), or
//!   a PUT/POST to a path the profile lists (the path's last segment
//!   names it);
//! - a **custom activity** matches the profile's method, path glob, query
//!   marker and body marker.

pub mod disposition;

use palisade_schema::session::{glob_matches, AppProfile, CustomActivity};

/// A download: the file name it is saved under.
pub fn download(
    profile: &AppProfile,
    disposition: Option<&[u8]>,
    content_type: &[u8],
    target: &[u8],
) -> Option<Vec<u8>> {
    let attachment = disposition.and_then(disposition::attachment_name);
    let media_type = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    let is_download = attachment.is_some()
        || (!media_type.is_empty()
            && profile
                .download_content_types
                .iter()
                .any(|d| d.as_bytes().eq_ignore_ascii_case(media_type)))
        || path_matches(&profile.download_paths, target);
    if !is_download {
        return None;
    }
    Some(match attachment {
        Some(n) if !n.is_empty() => n,
        _ => last_segment(target).to_vec(),
    })
}

/// How a request body is an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// A multipart body with this boundary: its file parts are the files.
    Multipart(Vec<u8>),
    /// The whole body is one file, named by the path's last segment.
    Body,
}

/// Whether a request with a body is an upload.
pub fn upload(
    profile: &AppProfile,
    method: &[u8],
    target: &[u8],
    content_type: &[u8],
) -> Option<Upload> {
    if let Some(b) = disposition::multipart_boundary(content_type) {
        return Some(Upload::Multipart(b.to_vec()));
    }
    (matches!(method, b"PUT" | b"POST") && path_matches(&profile.upload_paths, target))
        .then_some(Upload::Body)
}

/// The name an upload is logged under, from the body bytes that have
/// arrived: a multipart body's first file part (`None` when none has
/// arrived, or the form has no file), else the path's last segment.
pub fn upload_file_name(upload: &Upload, buffered: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    match upload {
        Upload::Multipart(_) => disposition::multipart_file_name(buffered),
        Upload::Body => Some(last_segment(target).to_vec()),
    }
}

/// The custom activity a request is, by the app's profile (method, path
/// glob, query marker; the body marker is checked by the caller with the
/// body at hand). Returns indices of candidates needing the body too.
pub fn custom_activity<'p>(
    profile: &'p AppProfile,
    method: &[u8],
    target: &[u8],
) -> impl Iterator<Item = &'p CustomActivity> + 'p {
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    let (path, query, method) = (path.to_vec(), query.to_vec(), method.to_vec());
    profile.activities.iter().filter(move |a| {
        (a.method.is_empty() || a.method.as_bytes() == method.as_slice())
            && glob_matches(a.path.as_bytes(), &path, false)
            && (a.query_contains.is_empty()
                || memchr::memmem::find(&query, a.query_contains.as_bytes()).is_some())
    })
}

/// Whether `target`'s path matches one of `globs`.
pub fn path_matches(globs: &[String], target: &[u8]) -> bool {
    let path = target.split(|b| *b == b'?').next().unwrap_or(b"");
    globs
        .iter()
        .any(|g| glob_matches(g.as_bytes(), path, false))
}

/// The last path segment of a request target (a file name for PUT
/// uploads and downloads without a disposition name).
pub fn last_segment(target: &[u8]) -> &[u8] {
    let path = target.split(|b| *b == b'?').next().unwrap_or(b"");
    path.rsplit(|b| *b == b'/').next().unwrap_or(b"")
}
