//! Property tests of the value parsers: on any text they never panic, and
//! what they accept prints back to text they accept as the same value.

use proptest::prelude::*;
use todo_core::{
    Description, Email, Label, Labels, Password, SearchText, TaskCursor, TaskId, TaskQuery,
    TaskSort, Timestamp, Title, UserId, Username,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_.@ -]{0,40}",
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}",
        "\\PC{0,300}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_and_round_trip(raw in text()) {
        if let Ok(u) = Username::parse(&raw) {
            prop_assert_eq!(Username::parse(u.as_str()).unwrap(), u);
        }
        if let Ok(e) = Email::parse(&raw) {
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
        }
        if let Ok(t) = Title::parse(&raw) {
            prop_assert_eq!(Title::parse(t.as_str()).unwrap(), t);
        }
        if let Ok(d) = Description::parse(&raw) {
            prop_assert_eq!(Description::parse(d.as_str()).unwrap(), d);
        }
        if let Ok(l) = Label::parse(&raw) {
            prop_assert_eq!(Label::parse(l.as_str()).unwrap(), l);
        }
        if let Ok(q) = SearchText::parse(&raw) {
            prop_assert_eq!(q.folded(), raw.to_lowercase());
        }
        let user = Username::parse("someone").unwrap();
        if let Ok(p) = Password::new_for(&raw, &user) {
            let again = Password::new_for(p.expose(), &user).unwrap();
            prop_assert_eq!(again.expose(), p.expose());
        }
        let _ = (TaskCursor::parse(&raw), Timestamp::parse_rfc3339(&raw, "t"), TaskSort::parse(&raw));
    }

    #[test]
    fn label_sets_are_order_free_and_round_trip(labels in prop::collection::vec("[a-zA-Z]{1,8}", 0..25)) {
        match Labels::parse(labels.iter().map(String::as_str)) {
            Ok(set) => {
                let again: Vec<&str> = set.iter().map(Label::as_str).collect();
                prop_assert_eq!(Labels::parse(again.iter().rev().copied()).unwrap(), set);
            }
            Err(_) => {
                let mut distinct = labels.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert!(labels.len() > 20 || distinct.len() < labels.len());
            }
        }
    }

    #[test]
    fn times_and_ids_round_trip(micros in Timestamp::MIN.unix_micros()..=Timestamp::MAX.unix_micros(), bits in any::<u128>()) {
        let t = Timestamp::from_unix_micros(micros).unwrap();
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string(), "t").unwrap(), t);
        let id = TaskId::from_uuid(uuid::Uuid::from_u128(bits));
        prop_assert_eq!(TaskId::parse(&id.to_string()).unwrap(), id);
        let user = UserId::from_uuid(uuid::Uuid::from_u128(bits));
        prop_assert_eq!(UserId::parse(&user.to_string().to_uppercase()).unwrap(), user);
    }

    #[test]
    fn cursors_round_trip(key in any::<i64>(), bits in any::<u128>(), sort in 0usize..6, done in any::<Option<bool>>()) {
        let sorts = [TaskSort::CreatedAsc, TaskSort::CreatedDesc, TaskSort::DueAsc, TaskSort::DueDesc, TaskSort::PriorityAsc, TaskSort::PriorityDesc];
        let query = TaskQuery { sort: sorts[sort], done, ..TaskQuery::default() };
        let cursor = TaskCursor { sort: sorts[sort], key, id: TaskId::from_uuid(uuid::Uuid::from_u128(bits)), fingerprint: query.fingerprint() };
        let parsed = TaskCursor::parse(&cursor.to_string()).unwrap();
        prop_assert_eq!(parsed, cursor);
        prop_assert!(parsed.check(&query).is_ok());
    }
}
