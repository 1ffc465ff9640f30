//! The email tags that name our message in every SES event (`mail.tags`), so that an event finds
//! its message without an index of SES message ids.
//!
//! SES takes only ASCII letters, digits, `_` and `-` in tag values (at most 256). Tenant ids fit
//! as they are; message ids may also hold `.` and `:`, so `_` is escaped as `__`, `.` as `_d`
//! and `:` as `_c` (a 128-byte id becomes at most 256 bytes).

use std::collections::BTreeMap;

use crate::ids::{MessageId, TenantId};

/// The tag naming the tenant.
pub const TENANT_TAG: &str = "engageninja_tenant_id";
/// The tag naming our message id (escaped).
pub const MESSAGE_TAG: &str = "engageninja_message_id";

/// The tags of one message: (name, value) pairs SES accepts.
pub fn message_tags(tenant: &TenantId, message: &MessageId) -> [(&'static str, String); 2] {
    [
        (TENANT_TAG, tenant.as_str().to_owned()),
        (MESSAGE_TAG, escape(message.as_str())),
    ]
}

/// The tenant and message an event's tags name (`mail.tags`: name to values); `None` unless
/// both tags are there, once, and valid.
pub fn message_of_tags(tags: &BTreeMap<String, Vec<String>>) -> Option<(TenantId, MessageId)> {
    let only = |name: &str| match tags.get(name).map(Vec::as_slice) {
        Some([value]) => Some(value.as_str()),
        _ => None,
    };
    let tenant = TenantId::parse(only(TENANT_TAG)?).ok()?;
    let message = MessageId::parse(unescape(only(MESSAGE_TAG)?)?).ok()?;
    Some((tenant, message))
}

fn escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len() * 2);
    for c in raw.chars() {
        match c {
            '_' => escaped.push_str("__"),
            '.' => escaped.push_str("_d"),
            ':' => escaped.push_str("_c"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn unescape(escaped: &str) -> Option<String> {
    let mut raw = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            raw.push(c);
            continue;
        }
        raw.push(match chars.next()? {
            '_' => '_',
            'd' => '.',
            'c' => ':',
            _ => return None,
        });
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tags_of(pairs: &[(&'static str, String)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), vec![value.clone()]))
            .collect()
    }

    proptest! {
        #[test]
        fn every_id_round_trips_within_what_ses_accepts(
            tenant in "[A-Za-z0-9_-]{1,64}",
            message in "[A-Za-z0-9_.:-]{1,128}",
        ) {
            let (tenant, message) = (TenantId::parse(tenant).unwrap(), MessageId::parse(message).unwrap());
            let tags = message_tags(&tenant, &message);
            for (name, value) in &tags {
                prop_assert!(value.len() <= 256 && !value.is_empty());
                prop_assert!(name.bytes().chain(value.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            }
            prop_assert_eq!(message_of_tags(&tags_of(&tags)), Some((tenant, message)));
        }
    }

    #[test]
    fn tags_that_name_no_message_are_refused() {
        let good = [(TENANT_TAG, "acme".to_owned()), (MESSAGE_TAG, "m_d1".to_owned())];
        assert_eq!(
            message_of_tags(&tags_of(&good)),
            Some((TenantId::parse("acme").unwrap(), MessageId::parse("m.1").unwrap()))
        );
        assert_eq!(message_of_tags(&tags_of(&good[..1])), None);
        assert_eq!(
            message_of_tags(&tags_of(&[
                (TENANT_TAG, "acme".to_owned()),
                (MESSAGE_TAG, "m_x".to_owned())
            ])),
            None,
            "unknown escape"
        );
        assert_eq!(
            message_of_tags(&tags_of(&[
                (TENANT_TAG, "acme".to_owned()),
                (MESSAGE_TAG, "m_".to_owned())
            ])),
            None,
            "dangling escape"
        );
        let mut twice = tags_of(&good);
        twice.insert(TENANT_TAG.to_owned(), vec!["acme".to_owned(), "other".to_owned()]);
        assert_eq!(message_of_tags(&twice), None);
    }
}
