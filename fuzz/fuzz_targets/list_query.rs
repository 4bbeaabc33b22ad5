//! The task list's query-string and cursor decoder: no panic; a decoded
//! cursor re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use todo_core::TaskCursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((query, cursor)) = todo_http::decode::decode_list_query(Some(text)) {
        assert!((1..=100).contains(&query.limit.get()));
        if let Some(cursor) = cursor {
            assert_eq!(TaskCursor::parse(&cursor.to_string()).unwrap(), cursor);
        }
        // The cursor of any task under this query belongs to it.
        let _ = query.fingerprint();
    }
});
