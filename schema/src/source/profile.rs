//! `[app.profile]`: how an app's downloads, uploads and custom activities
//! look (content types and path globs; named activities by method, path,
//! query and body markers).

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::report::Report;
use crate::model::app::{LeakGuard, RewriteSettings};
use crate::model::session::{AppProfile, CustomActivity, BUILT_IN_ACTIVITIES};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppProfileSource {
    #[serde(default)]
    download_content_types: Vec<Spanned<String>>,
    #[serde(default)]
    download_paths: Vec<Spanned<String>>,
    #[serde(default)]
    upload_paths: Vec<Spanned<String>>,
    #[serde(default, rename = "activity")]
    activities: Vec<Spanned<CustomActivitySource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomActivitySource {
    name: Spanned<String>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    query_contains: String,
    #[serde(default)]
    body_contains: String,
}

pub(crate) fn check_path_glob(p: &Spanned<String>, report: Report<'_>) -> String {
    let text = p.get_ref().trim();
    if !text.starts_with('/') {
        report(p.span(), format!("path pattern {text:?} must start with /"));
    }
    text.to_string()
}

pub(crate) fn compile_profile(
    source: &Spanned<AppProfileSource>,
    report: Report<'_>,
) -> AppProfile {
    let s = source.get_ref();
    let types = check_content_types(&s.download_content_types, report);
    let mut seen = HashMap::new();
    let mut activities = Vec::new();
    for a in &s.activities {
        let a_ref = a.get_ref();
        let name = a_ref.name.get_ref().trim().to_string();
        if name.is_empty() || BUILT_IN_ACTIVITIES.contains(&name.as_str()) {
            report(
                a_ref.name.span(),
                format!("activity name {name:?} is empty or built in"),
            );
        } else if seen.insert(name.clone(), ()).is_some() {
            report(a_ref.name.span(), format!("duplicate activity {name:?}"));
        }
        let method = match &a_ref.method {
            Some(m) => {
                let text = m.get_ref().trim().to_ascii_uppercase();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
                    report(m.span(), format!("bad method {:?}", m.get_ref()));
                }
                text
            }
            None => String::new(),
        };
        activities.push(CustomActivity {
            name,
            method,
            path: check_path_glob(&a_ref.path, report),
            query_contains: a_ref.query_contains.clone(),
            body_contains: a_ref.body_contains.clone(),
        });
    }
    AppProfile {
        download_content_types: types,
        download_paths: s
            .download_paths
            .iter()
            .map(|p| check_path_glob(p, report))
            .collect(),
        upload_paths: s
            .upload_paths
            .iter()
            .map(|p| check_path_glob(p, report))
            .collect(),
        activities,
    }
}

/// Checks a list of media types: lower-cased, `type/subtype` without
/// parameters.
pub(crate) fn check_content_types(list: &[Spanned<String>], report: Report<'_>) -> Vec<String> {
    let mut types = Vec::with_capacity(list.len());
    for t in list {
        let text = t.get_ref().trim().to_ascii_lowercase();
        if !text.contains('/') || text.contains(';') {
            report(
                t.span(),
                format!("content type {text:?}: want type/subtype without parameters"),
            );
        }
        types.push(text);
    }
    types
}

/// `[app.rewrite]`: data responses rewritten anyway, the leak guard.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteSource {
    #[serde(default)]
    data_paths: Vec<Spanned<String>>,
    #[serde(default)]
    data_content_types: Vec<Spanned<String>>,
    leak_guard: Option<Spanned<String>>,
    #[serde(default)]
    leak_allow: Vec<Spanned<String>>,
}

pub(crate) fn compile_rewrite(
    source: &Spanned<RewriteSource>,
    report: Report<'_>,
) -> RewriteSettings {
    let s = source.get_ref();
    let leak_guard = match &s.leak_guard {
        None => LeakGuard::default(),
        Some(v) => LeakGuard::parse(v.get_ref()).unwrap_or_else(|| {
            report(
                v.span(),
                format!(
                    "unknown leak_guard {:?} (report, enforce, off)",
                    v.get_ref()
                ),
            );
            LeakGuard::default()
        }),
    };
    let mut leak_allow = Vec::new();
    for a in &s.leak_allow {
        let text = a.get_ref().trim();
        // One CSP source expression: no spaces, separators or quotes that
        // would end it or start another directive.
        if text.is_empty() || text.contains([' ', ';', ',', '\'', '"']) {
            report(
                a.span(),
                format!("leak_allow {text:?}: one CSP source expression"),
            );
        }
        leak_allow.push(text.to_string());
    }
    RewriteSettings {
        data_paths: s
            .data_paths
            .iter()
            .map(|p| check_path_glob(p, report))
            .collect(),
        data_content_types: check_content_types(&s.data_content_types, report),
        leak_guard,
        leak_allow,
    }
}
