//! Helpers for wire types.

use serde::{Deserialize, Deserializer};

/// For merge-patch fields: absent → `None`, `null` → `Some(None)`,
/// a value → `Some(Some(value))`. Use with `#[serde(default)]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A page's items as wire DTOs, and where the next page starts as text.
pub fn page<'a, T, D: From<&'a T>, C: std::fmt::Display>(
    page: &'a todo_core::Page<T, C>,
) -> (Vec<D>, Option<String>) {
    let items = page.items.iter().map(D::from).collect();
    (items, page.next_cursor.as_ref().map(ToString::to_string))
}

/// A page as a 200: its items as wire DTOs in the page type `wrap` makes
/// of them and the next cursor.
pub fn page_json<'a, T, D: From<&'a T>, C: std::fmt::Display, P: serde::Serialize>(
    found: &'a todo_core::Page<T, C>,
    wrap: impl FnOnce(Vec<D>, Option<String>) -> P,
) -> Result<crate::ApiResponse, crate::ApiError> {
    // About 400 bytes a task with a short description.
    let capacity = 64 + 512 * found.items.len();
    let (items, next_cursor) = page(found);
    crate::front::json_sized(http::StatusCode::OK, &wrap(items, next_cursor), capacity)
}
