//! The OCI distribution protocol as pure data: the name/tag/digest grammar
//! ([`reference`]), request routing ([`routes`]), media types ([`media`]) and the error
//! envelope with its single error-to-status mapping ([`errors`]). Nothing here does I/O.

pub mod errors;
pub mod media;
pub mod reference;
pub mod routes;

pub use errors::{Fault, OciCode, RegistryError};
pub use reference::{Digest, Reference, ReferenceError, RepoName, Tag};
pub use routes::{Endpoint, Route, RouteError, RouteTable, RoutedBy};
