//! Snapshot encoding of session control: session policies, the monitoring
//! notice and app activity profiles, validated again on decode.

use super::access::{decode_filters, encode_filters};
use super::error::SnapshotError;
use super::fields::{known, set_texts, text, text_lists, texts};
use crate::model::activity::SEVERITIES;
use crate::model::session::{
    check_recipient, AppProfile, Control, CustomActivity, FileFilter, Inspection, SessionAction,
    SessionPolicy, DETECTORS, FILE_TYPES, MAX_MAX_BYTES,
};
use crate::policy_capnp;

fn invalid(name: &str, what: &str) -> SnapshotError {
    SnapshotError::Invalid(format!("session policy {name:?}: {what}"))
}

fn control_to_capnp(c: Control) -> policy_capnp::SessionControl {
    match c {
        Control::Monitor => policy_capnp::SessionControl::Monitor,
        Control::Download => policy_capnp::SessionControl::ControlDownload,
        Control::Upload => policy_capnp::SessionControl::ControlUpload,
        Control::Activities => policy_capnp::SessionControl::BlockActivities,
    }
}

fn action_to_capnp(a: SessionAction) -> policy_capnp::SessionAction {
    match a {
        SessionAction::Audit => policy_capnp::SessionAction::Audit,
        SessionAction::Protect => policy_capnp::SessionAction::Protect,
        SessionAction::Block => policy_capnp::SessionAction::Block,
    }
}

pub(crate) fn encode(
    mut snap: policy_capnp::snapshot::Builder<'_>,
    policies: &[SessionPolicy],
    notice: &str,
) {
    snap.set_monitoring_notice(notice);
    let mut list = snap.init_session_policies(policies.len() as u32);
    for (i, p) in policies.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        {
            let mut filters = b.reborrow().init_filters();
            filters.set_name(p.name.as_str());
            encode_filters(filters, &p.filters);
        }
        b.set_control(control_to_capnp(p.control));
        text_lists!(b;
            init_activities: p.activities,
            init_file_names: p.file.names,
            init_extensions: p.file.extensions,
            init_file_types: p.file.types,
        );
        b.set_min_size(p.file.min_size);
        b.set_max_size(p.file.max_size);
        set_texts(
            b.reborrow().init_labels(p.file.labels.len() as u32),
            &p.file.labels,
        );
        if let Some(ins) = &p.inspection {
            b.set_has_inspection(true);
            let mut ib = b.reborrow().init_inspection();
            let mut ds = ib.reborrow().init_detectors(ins.detectors.len() as u32);
            for (j, (name, min)) in ins.detectors.iter().enumerate() {
                let mut d = ds.reborrow().get(j as u32);
                d.set_name(name.as_str());
                d.set_min_matches(*min);
            }
            text_lists!(ib;
                init_keywords: ins.keywords,
                init_regexes: ins.regexes,
            );
            ib.set_min_matches(ins.min_matches);
            ib.set_max_bytes(ins.max_bytes);
            ib.set_max_chars(ins.max_chars);
            ib.set_fail_closed(ins.fail_closed);
        }
        b.set_action(action_to_capnp(p.action));
        b.set_message(p.message.as_str());
        set_texts(
            b.reborrow().init_recipients(p.recipients.len() as u32),
            &p.recipients,
        );
        b.set_alert_severity(p.alert_severity.as_str());
        b.set_notice(p.notice);
    }
}

pub(crate) fn decode(
    list: capnp::struct_list::Reader<'_, policy_capnp::session_policy::Owned>,
) -> Result<Vec<SessionPolicy>, SnapshotError> {
    let mut out = Vec::with_capacity(list.len() as usize);
    for b in list.iter() {
        let filters_in = b.get_filters()?;
        let name = text(filters_in.get_name())?;
        let filters = decode_filters(filters_in, &name)?;
        let bad = |what: &str| invalid(&name, what);
        let control = match known(b.get_control())? {
            policy_capnp::SessionControl::Monitor => Control::Monitor,
            policy_capnp::SessionControl::ControlDownload => Control::Download,
            policy_capnp::SessionControl::ControlUpload => Control::Upload,
            policy_capnp::SessionControl::BlockActivities => Control::Activities,
        };
        let action = match known(b.get_action())? {
            policy_capnp::SessionAction::Audit => SessionAction::Audit,
            policy_capnp::SessionAction::Protect => SessionAction::Protect,
            policy_capnp::SessionAction::Block => SessionAction::Block,
        };
        let file = FileFilter {
            names: texts(b.get_file_names())?,
            extensions: texts(b.get_extensions())?,
            types: texts(b.get_file_types())?,
            min_size: b.get_min_size(),
            max_size: b.get_max_size(),
            labels: texts(b.get_labels())?,
        };
        if file.types.iter().any(|t| !FILE_TYPES.contains(&t.as_str())) {
            return Err(bad("unknown file type"));
        }
        let inspection = if b.get_has_inspection() {
            let ib = b.get_inspection()?;
            let mut detectors = Vec::new();
            for d in ib.get_detectors()?.iter() {
                let dn = text(d.get_name())?;
                if !DETECTORS.contains(&dn.as_str()) || d.get_min_matches() == 0 {
                    return Err(bad("unknown detector or min_matches 0"));
                }
                detectors.push((dn, d.get_min_matches()));
            }
            let regexes = texts(ib.get_regexes())?;
            for r in &regexes {
                regex::bytes::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| bad(&format!("bad regex: {e}")))?;
            }
            let ins = Inspection {
                detectors,
                keywords: texts(ib.get_keywords())?,
                regexes,
                min_matches: ib.get_min_matches().max(1),
                max_bytes: ib.get_max_bytes(),
                max_chars: ib.get_max_chars().max(1),
                fail_closed: ib.get_fail_closed(),
            };
            if ins.max_bytes == 0 || ins.max_bytes > MAX_MAX_BYTES {
                return Err(bad("max_bytes out of range"));
            }
            Some(ins)
        } else {
            None
        };
        let recipients = texts(b.get_recipients())?;
        for r in &recipients {
            check_recipient(r).map_err(|e| bad(&e))?;
        }
        if action == SessionAction::Protect
            && (recipients.is_empty() || control != Control::Download)
        {
            return Err(bad("protect needs control_download and recipients"));
        }
        let alert_severity = text(b.get_alert_severity())?;
        if !alert_severity.is_empty() && !SEVERITIES.contains(&alert_severity.as_str()) {
            return Err(bad("unknown severity"));
        }
        out.push(SessionPolicy {
            name,
            filters,
            control,
            activities: texts(b.get_activities())?,
            file,
            inspection,
            action,
            message: text(b.get_message())?,
            recipients,
            alert_severity,
            notice: b.get_notice(),
        });
    }
    Ok(out)
}

pub(crate) fn encode_profile(mut b: policy_capnp::app_profile::Builder<'_>, p: &AppProfile) {
    text_lists!(b;
        init_download_content_types: p.download_content_types,
        init_download_paths: p.download_paths,
        init_upload_paths: p.upload_paths,
    );
    let mut list = b.init_activities(p.activities.len() as u32);
    for (i, a) in p.activities.iter().enumerate() {
        let mut ab = list.reborrow().get(i as u32);
        ab.set_name(a.name.as_str());
        ab.set_method(a.method.as_str());
        ab.set_path(a.path.as_str());
        ab.set_query_contains(a.query_contains.as_str());
        ab.set_body_contains(a.body_contains.as_str());
    }
}

pub(crate) fn decode_profile(
    has: bool,
    r: capnp::Result<policy_capnp::app_profile::Reader<'_>>,
) -> Result<AppProfile, SnapshotError> {
    if !has {
        return Ok(AppProfile::default());
    }
    let r = r?;
    let mut activities = Vec::new();
    for a in r.get_activities()?.iter() {
        activities.push(CustomActivity {
            name: text(a.get_name())?,
            method: text(a.get_method())?,
            path: text(a.get_path())?,
            query_contains: text(a.get_query_contains())?,
            body_contains: text(a.get_body_contains())?,
        });
    }
    Ok(AppProfile {
        download_content_types: texts(r.get_download_content_types())?,
        download_paths: texts(r.get_download_paths())?,
        upload_paths: texts(r.get_upload_paths())?,
        activities,
    })
}
