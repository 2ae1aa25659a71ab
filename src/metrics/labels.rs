//! The label values of every metric: closed enums, so the number of series is fixed.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value, also used in audit events.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.label())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

label_enum!(
    /// What trustgate did with a pull.
    Outcome {
        /// Served as asked (policy `allow`, or a digest pull that needs no signature).
        Allow => "allow",
        /// A tag served as the digest its publisher signed.
        Rewrite => "rewrite",
        /// Refused.
        Deny => "deny",
        /// Would have been refused, but the rule is in `audit` mode: served, with a warning.
        AuditViolation => "audit_violation",
    }
);

label_enum!(
    /// Why, as a bounded label. The trust module's refusal reasons map onto these.
    DecisionReason {
        /// Nothing to explain: allowed by policy, or signed and verified.
        Ok => "ok",
        PolicyReject => "policy_reject",
        NoTrustData => "no_trust_data",
        TagNotSigned => "tag_not_signed",
        TagRevoked => "tag_revoked",
        SignedByUnacceptedRole => "unaccepted_role",
        Expired => "expired",
        SignatureInvalid => "signature_invalid",
        TrustUnreachable => "trust_unreachable",
        /// A `signed-only` digest pull of content not reached through a trusted tag.
        DigestNotTrusted => "digest_not_trusted",
        /// Upstream bytes did not match the signed digest or length.
        ContentMismatch => "content_mismatch",
        /// trustgate could not read or write its own stored trust data (a local fault).
        TrustStateError => "trust_state_error",
        Other => "other",
    }
);

label_enum!(
    /// Which kind of remote failed.
    Upstream {
        Registry => "registry",
        TrustServer => "trust_server",
    }
);

label_enum!(
    /// How a remote failed.
    UpstreamFailure {
        Connect => "connect",
        Timeout => "timeout",
        /// An unexpected HTTP status.
        Status => "status",
        /// A malformed or oversized response.
        Protocol => "protocol",
        Other => "other",
    }
);

label_enum!(
    /// What the on-disk content cache was asked for.
    ContentKind {
        Manifest => "manifest",
        Blob => "blob",
    }
);

label_enum!(
    /// Which signature system a policy verifier uses (verifier *names* are the audit log's).
    VerifierSystem {
        Notary => "notary",
        Cosign => "cosign",
        Notation => "notation",
    }
);

label_enum!(
    /// One verifier's answer for one pull.
    VerificationResult {
        /// It vouched for a digest.
        Verified => "verified",
        /// It did not (unsigned, wrong key, invalid, another digest, ...).
        Refused => "refused",
        /// It could not be asked (trust server or registry unreachable).
        Unavailable => "unavailable",
    }
);

label_enum!(
    /// The class of an HTTP status.
    StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirect => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        Other => "other",
    }
);

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }
}

label_enum!(
    /// A lookup's result.
    Lookup {
        Miss => "miss",
        Hit => "hit",
    }
);

label_enum!(
    /// A policy load's result.
    ReloadResult {
        Rejected => "rejected",
        Accepted => "accepted",
    }
);

label_enum!(
    /// Why a connection was closed before it was served.
    ConnectionRefusal {
        /// The client address already held its `max_connections_per_peer`.
        PeerLimit => "peer_limit",
    }
);
