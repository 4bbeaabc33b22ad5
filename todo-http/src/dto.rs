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
