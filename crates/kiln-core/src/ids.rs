//! Identifier formats shared with the MLflow client.

/// A new run id: `uuid4().hex`, 32 lowercase hex characters, as MLflow makes them.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new logged-model id: `m-` followed by 32 hex characters.
pub fn new_logged_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` is acceptable as a run id (the client's own check:
/// `^[a-zA-Z0-9][\w\-]{0,255}$`).
pub fn is_valid_run_id(id: &str) -> bool {
    let mut chars = id.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    id.len() <= 256 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A friendly random run name (`adjective-noun-NNN`), as MLflow gives unnamed runs.
pub fn random_run_name() -> String {
    const ADJ: &[&str] = &[
        "amber", "bold", "brisk", "calm", "clever", "crisp", "eager", "fierce", "gentle",
        "glowing", "honest", "keen", "lively", "merry", "nimble", "quiet", "rapid", "silent",
        "steady", "sunny",
    ];
    const NOUN: &[&str] = &[
        "anvil", "badger", "cedar", "comet", "ember", "falcon", "forge", "glacier", "harbor",
        "heron", "kiln", "lark", "meadow", "otter", "quarry", "river", "spark", "summit", "tern",
        "willow",
    ];
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    format!(
        "{}-{}-{}",
        ADJ[b[0] as usize % ADJ.len()],
        NOUN[b[1] as usize % NOUN.len()],
        u16::from_le_bytes([b[2], b[3]]) % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_32_hex() {
        let id = new_run_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(is_valid_run_id(&id));
        assert!(!is_valid_run_id("-abc"));
        assert!(!is_valid_run_id("a b"));
        assert!(new_logged_model_id().starts_with("m-"));
    }
}
