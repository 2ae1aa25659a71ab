//! `WWW-Authenticate` challenges (RFC 7235 §2.1, §4.1). Pure: no I/O, no clock.

/// One challenge from a `WWW-Authenticate` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Docker token auth (distribution `docs/spec/auth/token.md`).
    Bearer(BearerChallenge),
    Basic {
        realm: Option<String>,
    },
    /// A scheme we do not speak (Digest, Negotiate, ...): kept so callers can say so.
    Other {
        scheme: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    /// `error="insufficient_scope"` and friends (RFC 6750 §3).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("empty challenge")]
    Empty,
    #[error("unterminated quoted string at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("expected a token at byte {at}")]
    ExpectedToken { at: usize },
    #[error("Bearer challenge without a realm")]
    BearerWithoutRealm,
}

/// Parses every challenge in one header value, e.g.
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
/// A value can carry several challenges separated by commas (RFC 7235 §4.1), so a comma ends a
/// parameter and a following `scheme` without `=` starts the next challenge.
pub fn parse_challenges(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser {
        s: value.as_bytes(),
        text: value,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|c| c == b' ' || c == b'\t' || c == b',');
        if p.at_end() {
            break;
        }
        let scheme = p.token()?;
        let mut params: Vec<(String, String)> = Vec::new();
        p.skip_ws();
        if !p.at_end() && p.peek() != Some(b',') {
            match p.param()? {
                Some(kv) => params.push(kv),
                // token68 (`Negotiate abc==`): carries nothing we use.
                None => p.skip(|c| c != b','),
            }
        }
        loop {
            p.skip_ws();
            if p.peek() != Some(b',') {
                break;
            }
            let save = p.pos;
            p.skip(|c| c == b' ' || c == b'\t' || c == b',');
            if p.at_end() {
                break;
            }
            match p.param()? {
                Some(kv) => params.push(kv),
                // A bare token after a comma is the next challenge's scheme.
                None => {
                    p.pos = save;
                    break;
                }
            }
        }
        out.push(build(&scheme, params)?);
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

fn build(scheme: &str, params: Vec<(String, String)>) -> Result<Challenge, ChallengeError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm")
            .filter(|r| !r.is_empty())
            .ok_or(ChallengeError::BearerWithoutRealm)?;
        Ok(Challenge::Bearer(BearerChallenge {
            realm,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        }))
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic {
            realm: get("realm"),
        })
    } else {
        Ok(Challenge::Other {
            scheme: scheme.to_string(),
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += 1;
        }
    }
    fn skip_ws(&mut self) {
        self.skip(|c| c == b' ' || c == b'\t');
    }
    /// RFC 7230 §3.2.6 `token`.
    fn token(&mut self) -> Result<String, ChallengeError> {
        let start = self.pos;
        self.skip(is_tchar);
        if self.pos == start {
            return Err(ChallengeError::ExpectedToken { at: start });
        }
        Ok(self.text[start..self.pos].to_string())
    }
    /// `auth-param = token BWS "=" BWS ( token / quoted-string )`; `None` (position unchanged)
    /// when the input here is not a parameter.
    fn param(&mut self) -> Result<Option<(String, String)>, ChallengeError> {
        let save = self.pos;
        let Ok(name) = self.token() else {
            return Ok(None);
        };
        self.skip_ws();
        if self.peek() != Some(b'=') {
            self.pos = save;
            return Ok(None);
        }
        self.pos += 1;
        self.skip_ws();
        let value = match self.peek() {
            Some(b'"') => self.quoted()?,
            // `abc==` is token68 padding, not a parameter.
            Some(b'=') | Some(b',') | None => {
                self.pos = save;
                return Ok(None);
            }
            Some(_) => {
                // Lenient: some servers leave URLs unquoted; the value ends at a comma or space.
                let start = self.pos;
                self.skip(|c| c != b',' && c != b' ' && c != b'\t');
                self.text[start..self.pos].to_string()
            }
        };
        Ok(Some((name.to_ascii_lowercase(), value)))
    }

    /// RFC 7230 §3.2.6 `quoted-string`: a backslash quotes the next character.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.pos += 1;
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err(ChallengeError::UnterminatedQuote { at: start })
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        })
    }

    #[test]
    fn docker_hub_challenge() {
        let v = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/alpine:pull")
            )]
        );
    }

    #[test]
    fn scope_with_commas_and_escapes_stays_whole() {
        let v =
            r#"Bearer realm="https://a/t",scope="repository:a/b:pull,push",service="s \"q\" \\ x""#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![bearer(
                "https://a/t",
                Some(r#"s "q" \ x"#),
                Some("repository:a/b:pull,push")
            )]
        );
    }

    #[test]
    fn case_spaces_and_error_param() {
        let v = r#"bearer  Realm = "https://a/t" , SERVICE="reg" ,error="insufficient_scope""#;
        let got = parse_challenges(v).unwrap();
        assert_eq!(
            got,
            vec![Challenge::Bearer(BearerChallenge {
                realm: "https://a/t".into(),
                service: Some("reg".into()),
                scope: None,
                error: Some("insufficient_scope".into()),
            })]
        );
    }

    #[test]
    fn several_challenges_in_one_value() {
        let v =
            r#"Basic realm="Registry Realm", Bearer realm="https://a/t",service="x", Negotiate"#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![
                Challenge::Basic {
                    realm: Some("Registry Realm".into())
                },
                bearer("https://a/t", Some("x"), None),
                Challenge::Other {
                    scheme: "Negotiate".into()
                },
            ]
        );
    }

    #[test]
    fn basic_without_params_and_token68() {
        assert_eq!(
            parse_challenges("Basic").unwrap(),
            vec![Challenge::Basic { realm: None }]
        );
        assert_eq!(
            parse_challenges("Negotiate abc==, Basic realm=x").unwrap(),
            vec![
                Challenge::Other {
                    scheme: "Negotiate".into()
                },
                Challenge::Basic {
                    realm: Some("x".into())
                }
            ]
        );
    }

    #[test]
    fn unquoted_url_realm() {
        assert_eq!(
            parse_challenges("Bearer realm=https://a:5000/token,service=reg").unwrap(),
            vec![bearer("https://a:5000/token", Some("reg"), None)]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_challenges("  "), Err(ChallengeError::Empty));
        assert!(matches!(
            parse_challenges(r#"Bearer realm="https://a"#),
            Err(ChallengeError::UnterminatedQuote { .. })
        ));
        assert_eq!(
            parse_challenges(r#"Bearer service="x""#),
            Err(ChallengeError::BearerWithoutRealm)
        );
        assert_eq!(
            parse_challenges(r#"Bearer realm="""#),
            Err(ChallengeError::BearerWithoutRealm)
        );
    }

    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    /// Stands in for a fuzz target: arbitrary input never panics, and any quoted values
    /// survive a round trip, whatever commas, quotes, backslashes or `=` they hold.
    #[test]
    fn random_inputs_never_panic_and_quoted_values_round_trip() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7275_7374);
        let alphabet: Vec<char> = "aB=,\" \\\t:/é;x".chars().collect();
        let word = |rng: &mut rand::rngs::StdRng, n: usize| -> String {
            (0..rng.gen_range(0..n))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect()
        };
        for _ in 0..20_000 {
            let junk = word(&mut rng, 40);
            let _ = parse_challenges(&junk);
            let junk = format!("Bearer {junk}");
            let _ = parse_challenges(&junk);
        }
        for _ in 0..5_000 {
            let realm = format!("r{}", word(&mut rng, 20));
            let service = word(&mut rng, 20);
            let scope = word(&mut rng, 20);
            let v = format!(
                "Bearer realm={} , scope={},service={}, Basic realm={}",
                quote(&realm),
                quote(&scope),
                quote(&service),
                quote(&service)
            );
            assert_eq!(
                parse_challenges(&v).unwrap(),
                vec![
                    bearer(&realm, Some(&service), Some(&scope)),
                    Challenge::Basic {
                        realm: Some(service.clone())
                    }
                ],
                "{v}"
            );
        }
    }
}
