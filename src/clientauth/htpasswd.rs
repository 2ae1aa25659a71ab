//! An htpasswd file, bcrypt entries only (as docker/distribution's `htpasswd` auth: MD5-crypt,
//! SHA-1 and plain entries are weak and refused at load, with the line that holds one).

use std::collections::HashMap;

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// A hash at the file's own cost, checked for unknown users (see [`Htpasswd::verify`]).
    dummy: String,
}

impl Htpasswd {
    /// Parses `user:$2y$…` lines; blank lines and `#` comments are skipped. The error names
    /// the line, never the hash.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {n}: expected user:bcrypt-hash"));
            };
            if user.is_empty() {
                return Err(format!("line {n}: empty user name"));
            }
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                return Err(format!(
                    "line {n}: user {user:?} has a non-bcrypt hash; only bcrypt is accepted \
                     (htpasswd -B)"
                ));
            }
            if hash.get(4..6).and_then(|c| c.parse::<u32>().ok()).is_none() {
                return Err(format!("line {n}: user {user:?}: unreadable bcrypt cost"));
            }
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(format!("line {n}: user {user:?} is listed twice"));
            }
        }
        let Some(cost) = users
            .values()
            .filter_map(|h| h.get(4..6)?.parse::<u32>().ok())
            .max()
        else {
            return Err("no user in the file".into());
        };
        let dummy = bcrypt::hash("trustgate-dummy", cost.clamp(4, 31))
            .map_err(|e| format!("bcrypt cost {cost}: {e}"))?;
        Ok(Htpasswd { users, dummy })
    }

    /// Whether `password` is `user`'s. An unknown user costs as much as a wrong password, so
    /// timing does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_entries_verify_and_others_are_refused() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n\n")).unwrap();
        assert!(h.verify("alice", "s3cret"));
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("bob", "s3cret"));
        let e = Htpasswd::parse("alice:$apr1$abc$def\n").err().unwrap();
        assert!(e.contains("line 1") && e.contains("bcrypt"), "{e}");
        let e = Htpasswd::parse(&format!("a:{hash}\na:{hash}\n"))
            .err()
            .unwrap();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        assert!(Htpasswd::parse("justaname\n")
            .err()
            .unwrap()
            .contains("line 1"));
        let e = Htpasswd::parse("a:$2y$xx$abc\n").err().unwrap();
        assert!(e.contains("cost"), "{e}");
        assert!(Htpasswd::parse("# nothing\n").is_err());
    }
}
