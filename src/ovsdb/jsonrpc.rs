//! JSON-RPC 1.0 messages exactly as ovsdb-server speaks them.
//!
//! No `jsonrpc` member (the server drops the session on it), `params` always present,
//! notifications carry `"id": null`, replies may come without `result`.

use serde_json::{json, Map, Value};

/// One message on an OVSDB session.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call expecting a reply (ours, or the server's `echo`).
    Request {
        /// Request id (we send numbers; the server sends `"echo"`).
        id: Value,
        /// Method name.
        method: String,
        /// Parameters (always an array on the wire).
        params: Value,
    },
    /// A reply to a request.
    Response {
        /// Id of the request answered.
        id: Value,
        /// `result`, `null` when absent.
        result: Value,
        /// `error`, `null` on success.
        error: Value,
    },
    /// A call without reply (`update3`, `locked`, …).
    Notification {
        /// Method name.
        method: String,
        /// Parameters.
        params: Value,
    },
}

impl Message {
    /// Classify a parsed JSON value.
    ///
    /// # Errors
    /// A description of what is wrong when the value is not a JSON-RPC 1.0 message.
    pub fn from_value(v: Value) -> Result<Message, String> {
        let Value::Object(mut o) = v else {
            return Err("message is not a JSON object".into());
        };
        let id = o.remove("id").unwrap_or(Value::Null);
        match o.remove("method") {
            Some(Value::String(method)) => {
                let params = o.remove("params").unwrap_or(Value::Array(vec![]));
                if id.is_null() {
                    Ok(Message::Notification { method, params })
                } else {
                    Ok(Message::Request { id, method, params })
                }
            }
            Some(_) => Err("\"method\" is not a string".into()),
            None => {
                if id.is_null() && !o.contains_key("result") && !o.contains_key("error") {
                    return Err("message has neither method nor id".into());
                }
                Ok(Message::Response {
                    id,
                    result: o.remove("result").unwrap_or(Value::Null),
                    error: o.remove("error").unwrap_or(Value::Null),
                })
            }
        }
    }

    /// The wire form.
    pub fn to_value(&self) -> Value {
        match self {
            Message::Request { id, method, params } => {
                json!({"id": id, "method": method, "params": params})
            }
            Message::Response { id, result, error } => {
                let mut m = Map::new();
                m.insert("id".into(), id.clone());
                m.insert("result".into(), result.clone());
                m.insert("error".into(), error.clone());
                Value::Object(m)
            }
            Message::Notification { method, params } => {
                json!({"id": null, "method": method, "params": params})
            }
        }
    }

    /// Serialise onto `out` (no trailing delimiter: OVSDB needs none).
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &self.to_value());
    }
}

/// Encode a request without building an intermediate [`Message`] (hot path).
pub(crate) fn encode_request(out: &mut Vec<u8>, id: &Value, method: &str, params: &Value) {
    out.extend_from_slice(b"{\"id\":");
    let _ = serde_json::to_writer(&mut *out, id);
    out.extend_from_slice(b",\"method\":");
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(b",\"params\":");
    let _ = serde_json::to_writer(&mut *out, params);
    out.push(b'}');
}

/// Encode a request whose params are already encoded JSON.
pub(crate) fn encode_request_raw(out: &mut Vec<u8>, id: u64, method: &str, params: &[u8]) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"method\":");
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(b",\"params\":");
    out.extend_from_slice(params);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        let m = Message::from_value(json!({"id":"echo","method":"echo","params":[]})).unwrap();
        assert!(matches!(m, Message::Request { .. }));
        let m = Message::from_value(json!({"id":3,"error":"unknown method"})).unwrap();
        assert_eq!(
            m,
            Message::Response {
                id: json!(3),
                result: Value::Null,
                error: json!("unknown method")
            }
        );
        let m = Message::from_value(json!({"id":null,"method":"update3","params":[1]})).unwrap();
        assert!(matches!(m, Message::Notification { .. }));
        assert!(Message::from_value(json!([1])).is_err());
        assert!(Message::from_value(json!({"foo":1})).is_err());
    }

    #[test]
    fn wire_forms() {
        let mut out = vec![];
        encode_request(&mut out, &json!(7), "list_dbs", &json!([]));
        assert_eq!(out, br#"{"id":7,"method":"list_dbs","params":[]}"#);
        let n = Message::Notification {
            method: "x".into(),
            params: json!([]),
        }
        .to_value();
        assert_eq!(n, json!({"id":null,"method":"x","params":[]}));
        assert!(n.get("jsonrpc").is_none());
    }
}
