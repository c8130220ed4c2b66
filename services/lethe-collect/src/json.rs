//! Typed JSON bodies: a body that stands for one object must be a JSON object.

use serde::de::DeserializeOwned;

use crate::ApiError;

/// A body that is one JSON object, read as `T`, or 400 `invalid_json`. `serde` would also read a
/// struct from an array of its fields in order (`["a1", null, …]`), which no client means: a body
/// whose first byte past whitespace is not `{` is refused before it is read.
pub fn object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("invalid_json", "the body is not a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| {
        // As the collection endpoints say it: bytes that are not UTF-8 are not a JSON problem.
        if std::str::from_utf8(body).is_err() {
            ApiError::bad_request("invalid_utf8", "the body is not UTF-8")
        } else {
            ApiError::bad_request("invalid_json", e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Two {
        a: String,
        b: Option<u8>,
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_as_such() {
        assert_eq!(object::<Two>(b"{\"a\": \"\xff\"}").unwrap_err().code, "invalid_utf8");
    }

    #[test]
    fn only_objects_are_read() {
        assert_eq!(object::<Two>(b" \n{\"a\": \"x\", \"b\": 1}").unwrap(), Two { a: "x".into(), b: Some(1) });
        for bad in [&b"[\"x\", 1]"[..], b"\"x\"", b"", b"  ", b"null", b"{\"a\": 1}", b"{"] {
            assert_eq!(object::<Two>(bad).unwrap_err().code, "invalid_json", "{}", String::from_utf8_lossy(bad));
        }
    }
}
