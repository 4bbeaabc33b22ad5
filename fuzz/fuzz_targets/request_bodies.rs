//! Every request-body decoder on arbitrary bytes: no panic, and a failure
//! is always a 4xx problem. The first byte picks the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use todo_http::decode;

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    let status = match which % 5 {
        0 => decode::decode_registration(body).err().map(|e| e.status),
        1 => decode::decode_credentials(body).err().map(|e| e.status),
        2 => decode::decode_user_patch(body).err().map(|e| e.status),
        3 => decode::decode_new_task(body).err().map(|e| e.status),
        _ => decode::decode_task_patch(body).err().map(|e| e.status),
    };
    if let Some(status) = status {
        assert!(status.is_client_error(), "{status}");
    }
});
