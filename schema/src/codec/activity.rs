//! Snapshot encoding of activity policies (the alert rules controld runs on
//! the log stream), validated again on decode.

use super::error::SnapshotError;
use super::fields::{set_texts, text, text_lists, texts};
use crate::model::activity::{ActivityPolicy, AlertSpec, SEVERITIES};
use crate::policy_capnp;

pub(crate) fn encode_activity_policies(
    mut list: capnp::struct_list::Builder<'_, policy_capnp::activity_policy::Owned>,
    policies: &[ActivityPolicy],
) {
    for (i, p) in policies.iter().enumerate() {
        let mut out = list.reborrow().get(i as u32);
        out.set_name(p.name.as_str());
        text_lists!(out;
            init_kinds: p.kinds,
            init_apps: p.apps,
            init_users: p.users,
            init_activities: p.activities,
            init_actions: p.actions,
            init_methods: p.methods,
        );
        let mut statuses = out.reborrow().init_statuses(p.statuses.len() as u32);
        for (j, v) in p.statuses.iter().enumerate() {
            statuses.set(j as u32, *v);
        }
        out.set_url_contains(p.url_contains.as_str());
        set_texts(
            out.reborrow().init_policies(p.policies.len() as u32),
            &p.policies,
        );
        if let Some(a) = &p.alert {
            out.set_has_alert(true);
            let mut alert = out.init_alert();
            alert.set_severity(a.severity.as_str());
            alert.set_daily_limit(a.daily_limit);
        }
    }
}

pub(crate) fn decode_activity_policies(
    list: capnp::struct_list::Reader<'_, policy_capnp::activity_policy::Owned>,
) -> Result<Vec<ActivityPolicy>, SnapshotError> {
    let mut out = Vec::with_capacity(list.len() as usize);
    for p in list.iter() {
        let alert = if p.get_has_alert() {
            let a = p.get_alert()?;
            let severity = text(a.get_severity())?;
            if !SEVERITIES.contains(&severity.as_str()) {
                return Err(SnapshotError::Invalid(format!(
                    "activity policy alert severity {severity:?}"
                )));
            }
            Some(AlertSpec {
                severity,
                daily_limit: a.get_daily_limit(),
            })
        } else {
            None
        };
        out.push(ActivityPolicy {
            name: text(p.get_name())?,
            kinds: texts(p.get_kinds())?,
            apps: texts(p.get_apps())?,
            users: texts(p.get_users())?,
            activities: texts(p.get_activities())?,
            actions: texts(p.get_actions())?,
            methods: texts(p.get_methods())?,
            statuses: p.get_statuses()?.iter().collect(),
            url_contains: text(p.get_url_contains())?,
            policies: texts(p.get_policies())?,
            alert,
        });
    }
    Ok(out)
}
