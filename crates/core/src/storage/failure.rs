//! What went wrong talking to a store, when it is something the user can fix.
//!
//! [`StoreFailure::of`] reads an error and its causes. It decides by type wherever
//! object_store and its HTTP client give one:
//!
//! | failure | how it is told |
//! |---|---|
//! | denied | `object_store::Error::{PermissionDenied, Unauthenticated}` |
//! | no credentials (AWS SDK chain) | `NotSupported` caused by `aws_credential_types`' `CredentialsError` |
//! | TLS | an `HttpError` of kind `Connect` caused by an `io::Error` of kind `InvalidData` (what rustls' handshake failures become) |
//! | unreachable | an `HttpError` of kind `Connect`, otherwise |
//! | plain `http://` refused | a `reqwest::Error` that `is_builder()` (the client refuses the URL's scheme) |
//!
//! and by the store's words only where no type tells: a missing bucket or container
//! (object_store reports a 404, whose body alone says it is the bucket), credentials
//! asked of the instance metadata service (object_store's credential errors are
//! private types; the service's URL is the sign), and a key id without its secret
//! (a private builder error).

use std::error::Error as StdError;
use std::fmt;

use deltalake::DeltaTableError;
use object_store::client::{HttpError, HttpErrorKind};
use url::Url;

/// What went wrong talking to a store, when it is something the user can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The bucket or container does not exist.
    NoBucket {
        /// The store's own words, e.g. `NoSuchBucket: The specified bucket does not exist`.
        detail: String,
    },
    /// The store refused the credentials, or they grant no access.
    Denied {
        /// The store's own words.
        detail: String,
    },
    /// No credentials were found where the store's client looks for them.
    NoCredentials {
        /// What the client said.
        detail: String,
    },
    /// A plain `http://` endpoint, which the store's client refuses unless allowed.
    PlainHttp {
        /// What the client said.
        detail: String,
    },
    /// The TLS handshake failed: an `https://` address of a server that speaks plain
    /// HTTP, or a certificate this machine does not trust.
    Tls {
        /// The endpoint, e.g. `https://127.0.0.1:9000`.
        endpoint: String,
        /// What the TLS library said.
        detail: String,
    },
    /// Nothing answered at the endpoint (refused connection, unknown host), even
    /// after the bounded retries.
    Unreachable {
        /// The endpoint, e.g. `http://127.0.0.1:9000`.
        endpoint: String,
        /// What the client said.
        detail: String,
    },
}

impl StoreFailure {
    /// The store failure among `err` and its causes, if there is one the user can fix.
    pub fn of(err: &(dyn StdError + 'static)) -> Option<StoreFailure> {
        let chain = causes(err);
        let text = chain
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        // A client given no credentials asks the instance metadata service for them;
        // off a cloud machine nothing answers there, and what fails is a request to it
        // (refused, timed out or denied), which must not read as "unreachable store".
        if text.contains("/latest/api/token")
            || text.contains("/latest/meta-data/iam")
            || text.contains("/metadata/identity/oauth2/token")
        {
            return Some(StoreFailure::NoCredentials {
                detail: "none in the environment or the pipeline file, and the instance \
                         metadata service did not provide any"
                    .into(),
            });
        }
        chain
            .iter()
            .filter_map(|e| object_store_error(*e))
            .find_map(|e| from_object_store(e, &text))
            .or_else(|| from_words(&text))
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            StoreFailure::NoBucket { .. } => {
                "check the bucket or container in the table's URI: latefill creates tables, \
                 never buckets or containers"
            }
            StoreFailure::Denied { .. } => {
                "check the credentials: the environment (AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_ACCOUNT_KEY, \
                 GOOGLE_SERVICE_ACCOUNT, ...) or the [storage] section of the pipeline file"
            }
            StoreFailure::NoCredentials { .. } => {
                "set credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, \
                 a role), AZURE_STORAGE_ACCOUNT_KEY or a SAS token, \
                 GOOGLE_APPLICATION_CREDENTIALS, in the environment or in the [storage] \
                 section of the pipeline file"
            }
            StoreFailure::PlainHttp { .. } => {
                "the endpoint is plain http://: allow it with allow_http = \"true\" in \
                 [storage] (or AWS_ALLOW_HTTP=true, AZURE_ALLOW_HTTP=true in the \
                 environment), or use its https:// address"
            }
            StoreFailure::Tls { .. } => {
                "if the store serves plain HTTP, give its http:// address and allow it \
                 (allow_http = \"true\" in [storage], or AWS_ALLOW_HTTP=true); otherwise \
                 make this machine trust the store's certificate"
            }
            StoreFailure::Unreachable { .. } => {
                "check the endpoint (AWS_ENDPOINT_URL, AZURITE_BLOB_STORAGE_URL, or \
                 aws_endpoint in [storage]) and that the store is up and reachable"
            }
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreFailure::NoBucket { detail } => {
                write!(f, "the bucket or container does not exist ({detail})")
            }
            StoreFailure::Denied { detail } => write!(f, "the store denied access ({detail})"),
            StoreFailure::NoCredentials { detail } => {
                write!(f, "no credentials were found for the store ({detail})")
            }
            StoreFailure::PlainHttp { detail } => {
                write!(
                    f,
                    "the store's client refused a plain http:// endpoint ({detail})"
                )
            }
            StoreFailure::Tls { endpoint, detail } => {
                write!(f, "the TLS handshake with {endpoint} failed ({detail})")
            }
            StoreFailure::Unreachable { endpoint, detail } => {
                write!(f, "nothing answers at {endpoint} ({detail})")
            }
        }
    }
}

/// `err` and its causes, including the error an `io::Error` wraps (its `source()`
/// skips that error and gives the wrapped error's own source).
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut all = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        all.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    all
}

/// The object_store error in `e`: itself, or the one the Delta kernel keeps without
/// giving it as its `source()`.
fn object_store_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a object_store::Error> {
    if let Some(store) = e.downcast_ref::<object_store::Error>() {
        return Some(store);
    }
    let kernel = match e.downcast_ref::<DeltaTableError>() {
        Some(DeltaTableError::KernelError(kernel)) => kernel,
        _ => e.downcast_ref::<delta_kernel::Error>()?,
    };
    match kernel {
        delta_kernel::Error::ObjectStore(store) => Some(store),
        _ => None,
    }
}

/// A failure told by object_store's types; `text` (the whole chain's words) gives the
/// store's own words and the endpoint for the message.
fn from_object_store(err: &object_store::Error, text: &str) -> Option<StoreFailure> {
    use object_store::Error as E;
    match err {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return Some(StoreFailure::Denied {
                detail: store_words(text),
            });
        }
        E::NotSupported { source }
            if source.is::<aws_credential_types::provider::error::CredentialsError>() =>
        {
            return Some(StoreFailure::NoCredentials {
                detail: source.to_string(),
            });
        }
        _ => {}
    }
    let below = causes(err);
    let http = below.iter().find_map(|e| e.downcast_ref::<HttpError>());
    if http.is_some_and(|h| h.kind() == HttpErrorKind::Connect) {
        let endpoint = endpoint(text);
        let tls = below.iter().find_map(|e| {
            e.downcast_ref::<std::io::Error>()
                .filter(|io| io.kind() == std::io::ErrorKind::InvalidData)
        });
        return Some(match tls {
            Some(io) => StoreFailure::Tls {
                endpoint,
                detail: io
                    .get_ref()
                    .map_or_else(|| io.to_string(), ToString::to_string),
            },
            None => StoreFailure::Unreachable {
                endpoint,
                detail: format!("the connection failed{}", retries(text)),
            },
        });
    }
    if below
        .iter()
        .filter_map(|e| e.downcast_ref::<reqwest::Error>())
        .any(reqwest::Error::is_builder)
    {
        return Some(StoreFailure::PlainHttp {
            detail: "HTTP error: builder error".into(),
        });
    }
    None
}

/// The failures no type tells, from the words of an error and its causes.
fn from_words(text: &str) -> Option<StoreFailure> {
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
    ]) {
        return Some(StoreFailure::NoBucket {
            detail: store_words(text),
        });
    }
    // A key id without its secret: object_store's builder refuses it with a private error.
    if has(&["Missing SecretAccessKey", "Missing AccessKeyId"]) {
        return Some(StoreFailure::NoCredentials {
            detail: "an access key id without its secret access key, or the other way round".into(),
        });
    }
    // The AWS SDK's credential chain, where deltalake passes it on as text.
    if has(&["error occurred while loading credentials"]) {
        return Some(StoreFailure::NoCredentials {
            detail: store_words(text),
        });
    }
    None
}

/// The store's own words: the code and first line of an XML error body
/// (`NoSuchBucket: The specified bucket does not exist`), else the last part of the
/// first line.
fn store_words(text: &str) -> String {
    let code = between(text, "<Code>", "</Code>");
    let message = between(text, "<Message>", "</Message>")
        .map(|m| m.lines().next().unwrap_or_default().trim().to_owned());
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text
            .lines()
            .next()
            .unwrap_or_default()
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The endpoint of the first URL in `text` (object_store names the request's URL).
fn endpoint(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .and_then(|w| Url::parse(w).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "the store's endpoint".to_owned())
}

/// `, after N retries` when object_store says it retried.
fn retries(text: &str) -> String {
    between(text, "after ", " retries")
        .map(|n| format!(", after {n} retries"))
        .unwrap_or_default()
}

/// The text between the first `start` and the next `end`.
fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error as object_store gives it: a generic store error around `source`.
    fn generic(source: impl StdError + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(source),
        }
    }

    #[test]
    fn denied_is_told_by_type_whatever_the_words() {
        let err = object_store::Error::PermissionDenied {
            path: "t/_delta_log/_last_checkpoint".into(),
            source: "403 Forbidden: <Error><Code>AuthorizationFailure</Code><Message>Server failed to authenticate the request.\nRequestId:1</Message></Error>".into(),
        };
        assert!(
            matches!(StoreFailure::of(&err), Some(StoreFailure::Denied { detail }) if detail.starts_with("AuthorizationFailure: Server failed"))
        );
        // Inside the Delta kernel's error, which keeps it without giving it as a source.
        let err = DeltaTableError::KernelError(delta_kernel::Error::ObjectStore(
            object_store::Error::Unauthenticated {
                path: "t".into(),
                source: "anything".into(),
            },
        ));
        assert!(matches!(
            StoreFailure::of(&err),
            Some(StoreFailure::Denied { .. })
        ));
    }

    #[test]
    fn a_connection_error_is_unreachable_and_a_bad_handshake_is_tls() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = generic(HttpError::new(HttpErrorKind::Connect, refused));
        assert!(matches!(
            StoreFailure::of(&err),
            Some(StoreFailure::Unreachable { .. })
        ));
        // hyper's connector wraps rustls' error in two io::Errors, the inner of kind
        // InvalidData.
        let handshake = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received corrupt message of type InvalidContentType",
        ));
        let err = generic(HttpError::new(HttpErrorKind::Connect, handshake));
        assert_eq!(
            StoreFailure::of(&err),
            Some(StoreFailure::Tls {
                endpoint: "the store's endpoint".into(),
                detail: "received corrupt message of type InvalidContentType".into()
            })
        );
    }

    #[test]
    fn what_no_type_tells_is_recognised_from_the_stores_words() {
        let no_bucket = generic(std::io::Error::other(
            "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
        ));
        assert_eq!(
            StoreFailure::of(&no_bucket),
            Some(StoreFailure::NoBucket {
                detail: "NoSuchBucket: The specified bucket does not exist".into()
            })
        );
        let metadata = generic(std::io::Error::other(
            "Error performing PUT http://169.254.169.254/latest/api/token in 2ms",
        ));
        assert!(matches!(
            StoreFailure::of(&metadata),
            Some(StoreFailure::NoCredentials { .. })
        ));
        let other = generic(std::io::Error::other("Json error: expected value"));
        assert_eq!(StoreFailure::of(&other), None);
    }
}
