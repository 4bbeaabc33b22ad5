//! The value rules of API.md, one type at a time.

use todo_core::{
    Description, Email, Label, Labels, PageLimit, Password, Priority, Role, SearchText, TaskCursor,
    TaskId, TaskQuery, TaskSort, TaskVersion, Timestamp, Title, UserCursor, UserId, Username,
    ValidationError,
};

#[test]
fn usernames_are_3_to_32_of_a_small_alphabet_folded_to_lower_case() {
    assert_eq!(
        Username::parse("Alice_01.x-y").unwrap().as_str(),
        "alice_01.x-y"
    );
    assert!(Username::parse("abc").is_ok());
    assert!(Username::parse(&"a".repeat(32)).is_ok());
    for (bad, field_rule) in [
        ("ab", "length"),
        (&"a".repeat(33) as &str, "length"),
        ("", "length"),
        ("al ice", "charset"),
        ("alice!", "charset"),
        ("ålice", "charset"),
        ("al\u{0}ice", "charset"),
    ] {
        let err = Username::parse(bad).unwrap_err();
        assert_eq!(err.field(), "username");
        match field_rule {
            "length" => assert!(
                matches!(err, ValidationError::Length { .. }),
                "{bad:?}: {err:?}"
            ),
            _ => assert!(
                matches!(err, ValidationError::Charset { .. }),
                "{bad:?}: {err:?}"
            ),
        }
    }
    // Huge input is refused without being folded.
    assert!(Username::parse(&"A".repeat(1_000_000)).is_err());
}

#[test]
fn passwords_are_8_to_128_characters_after_nfkc_and_not_the_username() {
    let alice = Username::parse("alice").unwrap();
    assert!(Password::new_for("correct horse", &alice).is_ok());
    assert!(Password::new_for("1234567", &alice).is_err());
    assert!(
        Password::new_for(&"é".repeat(128), &alice).is_ok(),
        "128 characters, 256 bytes"
    );
    assert!(Password::new_for(&"x".repeat(129), &alice).is_err());
    let same = Password::new_for("alice", &Username::parse("alice").unwrap());
    assert!(same.is_err());
    let long_name = Username::parse("alicealice").unwrap();
    assert_eq!(
        Password::new_for("AliceAlice", &long_name).unwrap_err(),
        ValidationError::PasswordIsUsername { field: "password" }
    );
    // NFKC: the ligature "ﬁ" and "fi" are the same password.
    let ligature = Password::new_for("ﬁrst-password", &alice).unwrap();
    assert_eq!(ligature.expose(), "first-password");
    // Never printed.
    assert!(!format!("{ligature:?}").contains("first"));
    // Oversized input is refused before normalisation.
    assert!(Password::offered(&"x".repeat(Password::MAX_INPUT_BYTES + 1)).is_none());
    assert!(
        Password::offered("short").is_some(),
        "login input is only size-checked"
    );
}

#[test]
fn emails_need_one_at_and_a_dotted_domain() {
    assert_eq!(
        Email::parse("a.b+c@example.org").unwrap().as_str(),
        "a.b+c@example.org"
    );
    for bad in [
        "",
        "plain",
        "@example.org",
        "a@",
        "a@b",
        "a@.b",
        "a@b.",
        "a b@c.d",
        "a@b@c.d",
        "a@b..c",
        // (what a mail library reads as something else)
        "mal<victim@victim.test>",
        "a,b@x.test",
        "\"a b\"@x.test",
        "a@[127.0.0.1]",
        "üser@exämple.test",
        "a..b@x.test",
        ".a@x.test",
        "a@-x.test",
        "=?utf-8?b?dmljdGlt?=@bank.test",
        "mallory%evil.test@corp.test",
        "evil.test!mallory@corp.test",
        "a@127.0.0.1",
    ] {
        assert_eq!(Email::parse(bad).unwrap_err().field(), "email", "{bad:?}");
    }
    assert!(Email::parse(&format!("{}@example.org", "a".repeat(65))).is_err());
    assert!(Email::parse(&format!("a@{}.org", "b".repeat(260))).is_err());
    // What earlier versions stored still reads back.
    assert!(Email::from_stored("a,b@x.test").is_ok());
    assert!(Email::parse("o'brien+todo@mail.example.co.uk").is_ok());
}

#[test]
fn roles_are_user_or_admin() {
    assert_eq!(Role::parse("user").unwrap(), Role::User);
    assert_eq!(Role::parse("admin").unwrap().as_str(), "admin");
    assert!(Role::parse("Admin").is_err());
    assert!(Role::parse("root").is_err());
}

#[test]
fn ids_parse_only_the_hyphenated_form_and_round_trip() {
    let text = "01890a5d-ac96-774b-bcce-b302099a8057";
    let id = UserId::parse(text).unwrap();
    assert_eq!(id.to_string(), text);
    assert_eq!(
        TaskId::parse(&text.to_uppercase()).unwrap().to_string(),
        text
    );
    for bad in [
        "",
        "01890a5dac96774bbcceb302099a8057",
        "{01890a5d-ac96-774b-bcce-b302099a8057}",
        "x1890a5d-ac96-774b-bcce-b302099a8057",
        "1",
    ] {
        assert!(TaskId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn titles_are_1_to_200_characters_not_blank_without_control_characters() {
    assert!(Title::parse("x").is_ok());
    assert!(Title::parse(&"ü".repeat(200)).is_ok());
    assert!(matches!(
        Title::parse(&"x".repeat(201)),
        Err(ValidationError::Length { .. })
    ));
    assert!(matches!(
        Title::parse(""),
        Err(ValidationError::Length { .. })
    ));
    assert!(matches!(
        Title::parse("   \t"),
        Err(ValidationError::Blank { .. })
    ));
    assert!(matches!(
        Title::parse("a\nb"),
        Err(ValidationError::Charset { .. })
    ));
}

/// A title of characters that show nothing looks empty in every list: it
/// is blank, whatever its bytes. Within a title they stay (a joiner builds
/// an emoji).
#[test]
fn a_title_of_invisible_characters_is_blank() {
    for invisible in [
        "\u{200B}",
        "\u{200B} \u{FEFF}",
        "\u{2060}\u{200D}\u{00A0}",
        "\u{3164}",
        "\u{202E}\u{200F}",
    ] {
        assert!(
            matches!(Title::parse(invisible), Err(ValidationError::Blank { .. })),
            "{invisible:?}"
        );
    }
    assert!(Title::parse("a\u{200B}b").is_ok());
    assert!(Title::parse("\u{1F469}\u{200D}\u{1F4BB}").is_ok());
}

#[test]
fn descriptions_are_up_to_10000_characters_with_line_breaks_and_tabs() {
    assert!(Description::parse("").is_ok());
    assert!(Description::parse("line\r\nline\ttab").is_ok());
    assert!(Description::parse(&"ß".repeat(10_000)).is_ok());
    assert!(Description::parse(&"ß".repeat(10_001)).is_err());
    assert!(Description::parse("bell\u{7}").is_err());
    assert!(
        Description::parse("unit\u{1f}separator").is_err(),
        "the search separator"
    );
}

#[test]
fn priorities_are_0_to_3_defaulting_to_0() {
    assert_eq!(Priority::default().get(), 0);
    assert_eq!(Priority::new(3).unwrap().get(), 3);
    for bad in [-1, 4, i64::MAX, i64::MIN] {
        assert!(Priority::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn labels_are_up_to_20_distinct_of_1_to_32_characters() {
    let twenty: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
    assert!(Labels::parse(twenty.iter().map(String::as_str)).is_ok());
    let twenty_one: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
    assert!(matches!(
        Labels::parse(twenty_one.iter().map(String::as_str)),
        Err(ValidationError::TooMany { max: 20, .. })
    ));
    assert!(matches!(
        Labels::parse(["a", "b", "a"]),
        Err(ValidationError::Duplicate { .. })
    ));
    assert!(
        Labels::parse(["Work", "work"]).is_ok(),
        "labels are case-sensitive"
    );
    assert!(Label::parse(&"x".repeat(32)).is_ok());
    assert!(Label::parse(&"x".repeat(33)).is_err());
    assert!(Label::parse("").is_err());
    assert!(Label::parse(" padded").is_err());
    assert!(Label::parse("new\nline").is_err());
    // Kept sorted, so equal sets compare equal.
    assert_eq!(
        Labels::parse(["b", "a"]).unwrap(),
        Labels::parse(["a", "b"]).unwrap()
    );
}

/// A label shows what it is: none made invisible or look-alike by
/// characters that show nothing or reorder the text, or that starts with a
/// combining mark; such a label as stored (accepted before) still reads.
#[test]
fn labels_show_what_they_are() {
    for bad in [
        "\u{200b}",
        "work\u{200b}",
        "\u{301}",
        "\u{301}work",
        "\u{202e}krow",
        "wo\u{2066}rk",
        "\u{feff}work",
        "work\u{ad}",
        "\u{ffff}",
        "\u{fdd0}x",
        "\u{3164}",
        "x\u{1fffe}",
        "\u{200d}",
        "\u{200c}\u{200d}",
        "\u{fe0f}a",
        "\u{2800}",
        "a\u{e0041}",
        "\u{600}x",
        "x\u{1d173}",
        "no\u{a0}break",
        "em\u{2003}space",
        "wide\u{3000}space",
        "line\u{2028}break",
    ] {
        assert!(
            matches!(Label::parse(bad), Err(ValidationError::Charset { .. })),
            "{bad:?}"
        );
        assert!(Label::parse_stored(bad).is_ok(), "{bad:?} as stored");
    }
    // Accents, scripts that join with ZWNJ, emoji sequences with ZWJ and
    // variation selectors, flags of tag sequences: all visible.
    for good in [
        "caf\u{e9}",
        "cafe\u{301}",
        "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
        "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
        "\u{2764}\u{fe0f}",
        "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
    ] {
        assert!(Label::parse(good).is_ok(), "{good:?}");
    }
    assert!(Labels::parse(["work", "work\u{200b}"]).is_err());
    assert_eq!(
        Labels::parse_stored(["work", "work\u{200b}"])
            .unwrap()
            .iter()
            .count(),
        2
    );
}

#[test]
fn times_are_rfc3339_normalised_to_utc_microseconds() {
    let t = Timestamp::parse_rfc3339("2026-03-01T14:30:45.1234567+02:00", "due_at").unwrap();
    assert_eq!(t.to_string(), "2026-03-01T12:30:45.123456Z");
    assert_eq!(
        Timestamp::parse_rfc3339(&t.to_string(), "x").unwrap(),
        t,
        "round trip"
    );
    for bad in [
        "",
        "2026-03-01",
        "2026-13-01T00:00:00Z",
        "yesterday",
        "2026-03-01T12:30:45",
    ] {
        let err = Timestamp::parse_rfc3339(bad, "due_before").unwrap_err();
        assert_eq!(err.field(), "due_before", "{bad:?}");
    }
    assert!(Timestamp::parse_rfc3339(&"9".repeat(100), "due_at").is_err());
    assert!(Timestamp::from_unix_micros(i64::MAX).is_err());
}

#[test]
fn versions_start_at_one_and_grow() {
    assert_eq!(TaskVersion::FIRST.get(), 1);
    assert_eq!(TaskVersion::FIRST.next().get(), 2);
    assert!(TaskVersion::new(0).is_err());
}

#[test]
fn list_query_values_have_their_ranges() {
    assert_eq!(PageLimit::default().get(), 50);
    assert!(PageLimit::new(1).is_ok() && PageLimit::new(100).is_ok());
    assert!(
        PageLimit::new(0).is_err() && PageLimit::new(101).is_err() && PageLimit::new(-5).is_err()
    );
    for sort in [
        "created",
        "-created",
        "due",
        "-due",
        "priority",
        "-priority",
    ] {
        assert_eq!(TaskSort::parse(sort).unwrap().as_str(), sort);
    }
    assert!(TaskSort::parse("title").is_err());
    assert_eq!(TaskSort::default(), TaskSort::CreatedDesc);
    assert_eq!(SearchText::parse("MiXeD").unwrap().folded(), "mixed");
    assert!(SearchText::parse("").is_err());
    assert!(SearchText::parse(&"q".repeat(201)).is_err());
}

#[test]
fn cursors_round_trip_and_refuse_tampering() {
    let query = TaskQuery {
        sort: TaskSort::DueAsc,
        ..TaskQuery::default()
    };
    let cursor = TaskCursor {
        sort: TaskSort::DueAsc,
        key: -42,
        id: TaskId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap(),
        fingerprint: query.fingerprint(),
    };
    let text = cursor.to_string();
    assert_eq!(TaskCursor::parse(&text).unwrap(), cursor);
    assert!(cursor.check(&query).is_ok());
    // The same cursor under another query is refused.
    let other = TaskQuery {
        done: Some(true),
        ..query.clone()
    };
    assert!(cursor.check(&other).is_err());
    let resorted = TaskQuery {
        sort: TaskSort::DueDesc,
        ..query
    };
    assert!(cursor.check(&resorted).is_err());
    for bad in [
        "",
        "!!!!",
        &text[1..],
        &format!("{text}A"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(TaskCursor::parse(bad).is_err(), "{bad:?}");
    }
    let users = UserCursor(UserId::parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap());
    assert_eq!(UserCursor::parse(&users.to_string()).unwrap(), users);
    assert!(UserCursor::parse(&text).is_err());
}
