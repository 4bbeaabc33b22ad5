//! Every domain parser on arbitrary text: no panic, and what parses prints
//! back to text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use todo_core::{
    ChangeCursor, Description, Email, EventFilter, Label, Labels, PageLimit, Password, Priority,
    ProjectColor, ProjectCursor, ProjectId, ProjectName, ProjectRole, Recurrence, Reminder, Role,
    SearchText, TaskCursor, TimeZoneName,
    TaskId, TaskSort, Timestamp, Title, UserCursor, UserId, Username, WebhookSecret, WebhookUrl,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Username::parse(text) {
        assert_eq!(Username::parse(u.as_str()).unwrap(), u);
        assert_eq!(u.as_str(), u.as_str().to_lowercase());
    }
    if let Ok(e) = Email::parse(text) {
        assert_eq!(Email::parse(e.as_str()).unwrap(), e);
    }
    if let Some(p) = Password::offered(text) {
        // NFKC is idempotent: normalising again changes nothing; but it can
        // grow the text past the input limit (a finding of this target).
        match Password::offered(p.expose()) {
            Some(again) => assert_eq!(again.expose(), p.expose()),
            None => assert!(p.expose().len() > Password::MAX_INPUT_BYTES),
        }
    }
    let user = Username::parse("someone").unwrap();
    if let Ok(p) = Password::new_for(text, &user) {
        // A valid new password is at most 128 characters once normalised.
        assert!(p.expose().chars().count() <= Password::MAX_CHARS);
        assert_eq!(
            Password::new_for(p.expose(), &user).unwrap().expose(),
            p.expose()
        );
    }
    for allow_plain in [false, true] {
        if let Ok(url) = WebhookUrl::parse(text, allow_plain) {
            // What parses reads back the same, and its parts are within it.
            let again = WebhookUrl::parse(url.as_str(), allow_plain).unwrap();
            assert_eq!(again, url);
            assert!(url.as_str().contains(url.host()));
            assert!(url.path_and_query().starts_with('/'));
            assert!(allow_plain || url.is_https());
            assert!(url.port() > 0);
        }
    }
    if let Ok(filter) = EventFilter::parse(text.split(',')) {
        let names: Vec<&str> = filter.kinds().iter().map(|k| k.as_str()).collect();
        assert_eq!(EventFilter::parse(names).unwrap(), filter);
    }
    if let Ok(secret) = WebhookSecret::parse_stored(text.to_owned()) {
        assert!(secret.key().len() >= 24);
    }
    if let Ok(n) = ProjectName::parse(text) {
        assert_eq!(ProjectName::parse(n.as_str()).unwrap(), n);
    }
    if let Ok(c) = ProjectColor::parse(text) {
        // Kept in lower case: the value reads back, not the text.
        assert_eq!(ProjectColor::parse(c.as_str()).unwrap(), c);
        assert_eq!(c.as_str(), text.to_ascii_lowercase());
    }
    // Recurrence: the canonical form reads back as the same rule, and
    // expanding it from any start stays bounded and in order.
    if let Ok(rule) = Recurrence::parse(text) {
        let canonical = rule.to_string();
        assert_eq!(Recurrence::parse(&canonical).unwrap(), rule);
        let zone = TimeZoneName::parse("Europe/Berlin").unwrap();
        let start = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
        let firsts: Vec<Timestamp> = rule.occurrences(start, &zone).take(20).collect();
        assert_eq!(firsts.first(), Some(&start));
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{canonical}: {firsts:?}");
    }
    if let Ok(zone) = TimeZoneName::parse(text) {
        assert_eq!(TimeZoneName::parse(zone.as_str()).unwrap(), zone);
    }
    if let Ok(reminder) = Reminder::parse_before_due(text) {
        assert_eq!(Reminder::parse_before_due(&reminder.to_string()).unwrap(), reminder);
    }
    if let Ok(role) = ProjectRole::parse_grantable(text) {
        assert_ne!(role, ProjectRole::Owner);
        assert_eq!(ProjectRole::parse_stored(role.as_str()), Some(role));
    }
    if let Some(role) = ProjectRole::parse_stored(text) {
        assert_eq!(role.as_str(), text);
    }
    if let Ok(id) = ProjectId::parse(text) {
        assert_eq!(ProjectId::parse(&id.to_string()).unwrap(), id);
    }
    if let Ok(c) = ProjectCursor::parse(text) {
        assert_eq!(ProjectCursor::parse(&c.to_string()).unwrap(), c);
    }
    if let Ok(t) = Title::parse(text) {
        assert_eq!(Title::parse(t.as_str()).unwrap(), t);
    }
    if let Ok(d) = Description::parse(text) {
        assert_eq!(Description::parse(d.as_str()).unwrap(), d);
    }
    if let Ok(l) = Label::parse(text) {
        assert_eq!(Label::parse(l.as_str()).unwrap(), l);
    }
    if let Ok(labels) = Labels::parse(text.split(',')) {
        let again: Vec<&str> = labels.iter().map(Label::as_str).collect();
        assert_eq!(Labels::parse(again).unwrap(), labels);
    }
    if let Ok(t) = Timestamp::parse_rfc3339(text, "t") {
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string(), "t").unwrap(), t);
    }
    if let Ok(id) = UserId::parse(text) {
        assert_eq!(UserId::parse(&id.to_string()).unwrap(), id);
    }
    if let Ok(id) = TaskId::parse(text) {
        assert_eq!(TaskId::parse(&id.to_string()).unwrap(), id);
    }
    if let Ok(c) = TaskCursor::parse(text) {
        assert_eq!(TaskCursor::parse(&c.to_string()).unwrap(), c);
    }
    if let Ok(c) = ChangeCursor::parse(text) {
        assert_eq!(ChangeCursor::parse(&c.to_string()).unwrap(), c);
    }
    if let Ok(c) = UserCursor::parse(text) {
        assert_eq!(UserCursor::parse(&c.to_string()).unwrap(), c);
    }
    if let Ok(s) = TaskSort::parse(text) {
        assert_eq!(s.as_str(), text);
    }
    if let Ok(r) = Role::parse(text) {
        assert_eq!(r.as_str(), text);
    }
    if let Ok(q) = SearchText::parse(text) {
        assert_eq!(q.folded(), text.to_lowercase());
    }
    if let Ok(n) = text.parse::<i64>() {
        let _ = (Priority::new(n), PageLimit::new(n));
    }
});
