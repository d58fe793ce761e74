//! Every Kinesis client the pipeline builds, configured in one place from [`KinesisSettings`]
//! (`[kinesis]`): the AWS SDK for Rust pointed at the configured region and endpoint (an
//! emulator locally), with static credentials when they are set and the standard AWS chain
//! otherwise. [`put`] sends records and answers per record, as `PutRecords` does; [`read`]
//! reads a shard page by page; [`streams`] creates, reshards and describes streams.

pub mod put;
pub mod read;
mod settings;
pub mod streams;

pub use settings::KinesisSettings;

pub use aws_sdk_kinesis::Client;
use aws_smithy_http_client::{Builder, tls};

/// A client for the configured streams.
pub async fn client(settings: &KinesisSettings) -> Client {
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(settings.region.clone()));
    if let Some(url) = settings.endpoint() {
        loader = loader.endpoint_url(url);
    }
    if let Some(credentials) = settings.static_credentials() {
        loader = loader.credentials_provider(credentials);
    }
    Client::new(&loader.load().await)
}

/// Why a Kinesis call failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// The service did not answer, or asked to slow down: try again later.
    #[error("Kinesis unavailable: {0}")]
    Unavailable(String),
    /// The request was refused for good (no such stream, bad credentials, invalid input).
    #[error("Kinesis refused the request: {0}")]
    Refused(String),
}

impl KinesisError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The error of a failed SDK call, judged by its kind.
    pub fn of<E, R>(error: aws_sdk_kinesis::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_kinesis::error::SdkError;
        // A service error says what it is in its code and message; the full context would
        // add the raw response (headers, body), a screenful per log line.
        let text = match &error {
            SdkError::ServiceError(service) => format!(
                "{}: {}",
                service.err().code().unwrap_or("service error"),
                service.err().message().unwrap_or_default()
            ),
            _ => aws_sdk_kinesis::error::DisplayErrorContext(&error).to_string(),
        };
        match &error {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self::Unavailable(text),
            SdkError::ServiceError(service) => match service.err().code() {
                Some(
                    "ProvisionedThroughputExceededException"
                    | "LimitExceededException"
                    | "ResourceInUseException"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "ThrottlingException",
                ) => Self::Unavailable(text),
                _ => Self::Refused(text),
            },
            _ => Self::Refused(text),
        }
    }
}
