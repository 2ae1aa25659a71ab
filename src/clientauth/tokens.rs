//! Static bearer tokens: a file of `NAME sha256:HEX` lines, where HEX is the SHA-256 of the
//! token. Only hashes are stored, so the file is not a secret worth stealing; clients send
//! `Authorization: Bearer <token>` (containerd: `[header]` in hosts.toml).

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

pub struct TokenSet {
    by_hash: HashMap<[u8; 32], String>,
}

impl TokenSet {
    pub fn parse(text: &str) -> Result<TokenSet, String> {
        let mut by_hash = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {n}: expected NAME sha256:HEX"));
            };
            let hex = hash.strip_prefix("sha256:").ok_or_else(|| {
                format!("line {n}: token {name:?}: expected sha256:<64 hex digits> (the token's hash, not the token)")
            })?;
            let mut digest = [0u8; 32];
            if hex.len() != 64 || hex::decode_to_slice(hex, &mut digest).is_err() {
                return Err(format!(
                    "line {n}: token {name:?}: expected sha256:<64 hex digits>"
                ));
            }
            if by_hash.insert(digest, name.to_string()).is_some() {
                return Err(format!(
                    "line {n}: token {name:?}: the same token is listed twice"
                ));
            }
        }
        if by_hash.is_empty() {
            return Err("no token in the file".into());
        }
        Ok(TokenSet { by_hash })
    }

    /// The name of the token, if it is one of ours. Looked up by hash: the presented token is
    /// never compared byte by byte with a stored secret.
    pub fn name_of(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&digest).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_hash() {
        let h = hex::encode(Sha256::digest(b"tok-1"));
        let t = TokenSet::parse(&format!("# ci\nci-runner sha256:{h}\n")).unwrap();
        assert_eq!(t.name_of("tok-1"), Some("ci-runner"));
        assert_eq!(t.name_of("tok-2"), None);
        assert!(TokenSet::parse("ci tok-1\n")
            .err()
            .unwrap()
            .contains("not the token"));
        assert!(TokenSet::parse("ci sha256:abcd\n")
            .err()
            .unwrap()
            .contains("line 1"));
        assert!(TokenSet::parse(&format!("a sha256:{h}\nb sha256:{h}\n"))
            .err()
            .unwrap()
            .contains("line 2"));
    }
}
