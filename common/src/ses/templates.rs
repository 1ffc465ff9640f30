//! SES v2 email templates of a tenant's account: `CreateEmailTemplate`, `UpdateEmailTemplate`,
//! `DeleteEmailTemplate`, `ListEmailTemplates` and `GetEmailTemplate` (whether one exists, so a
//! send naming an unknown template is refused before it reaches SES).

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::EmailTemplateContent;
use time::OffsetDateTime;

use super::{SesAccount, SesClient};

/// The most templates `ListEmailTemplates` answers a page (SES's own limit).
const LIST_PAGE: i32 = 100;

/// An email template's content: a subject and a text part, an HTML part, or both, each with
/// `{{placeholders}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTemplate {
    /// Its name, unique in the account and region.
    pub name: String,
    /// The subject line.
    pub subject: String,
    /// The text part.
    pub text: Option<String>,
    /// The HTML part.
    pub html: Option<String>,
}

/// A template as `ListEmailTemplates` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: Option<OffsetDateTime>,
}

/// Why a template operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No template of that name (`NotFoundException`).
    #[error("no template of that name")]
    NotFound,
    /// A template of that name exists (`AlreadyExistsException`).
    #[error("a template of that name exists")]
    AlreadyExists,
    /// SES refused the template or the request (`BadRequestException`, `LimitExceededException`).
    #[error("ses refused it: {0}")]
    Refused(String),
    /// SES refused the account's credentials.
    #[error("ses refused the account's credentials")]
    Auth,
    /// SES could not be reached or answered with a server error; try again later.
    #[error("ses is unavailable: {0}")]
    Unavailable(String),
}

/// Maps an SDK error of a template operation.
fn template_error<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> TemplateError {
    let SdkError::ServiceError(service) = error else {
        return TemplateError::Unavailable(error.to_string());
    };
    let status = service.raw().status().as_u16();
    let message = service.err().message().unwrap_or_default().to_owned();
    match service.err().code() {
        Some("NotFoundException") => TemplateError::NotFound,
        Some("AlreadyExistsException") => TemplateError::AlreadyExists,
        Some("BadRequestException" | "LimitExceededException") => TemplateError::Refused(message),
        _ if status == 401 || status == 403 => TemplateError::Auth,
        _ if status == 429 || status >= 500 => TemplateError::Unavailable(format!("HTTP {status}")),
        code => TemplateError::Refused(format!("{}: {message}", code.unwrap_or("error"))),
    }
}

/// The SDK's content of a template.
fn content(template: &EmailTemplate) -> EmailTemplateContent {
    EmailTemplateContent::builder()
        .subject(&template.subject)
        .set_text(template.text.clone())
        .set_html(template.html.clone())
        .build()
}

impl SesClient {
    /// Creates a template: `CreateEmailTemplate`.
    pub async fn create_template(&self, account: &SesAccount, template: &EmailTemplate) -> Result<(), TemplateError> {
        self.sdk_client(account)
            .create_email_template()
            .template_name(&template.name)
            .template_content(content(template))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| template_error(&error))
    }

    /// Replaces a template's content: `UpdateEmailTemplate`.
    pub async fn update_template(&self, account: &SesAccount, template: &EmailTemplate) -> Result<(), TemplateError> {
        self.sdk_client(account)
            .update_email_template()
            .template_name(&template.name)
            .template_content(content(template))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| template_error(&error))
    }

    /// Deletes a template: `DeleteEmailTemplate`.
    pub async fn delete_template(&self, account: &SesAccount, name: &str) -> Result<(), TemplateError> {
        self.sdk_client(account)
            .delete_email_template()
            .template_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|error| template_error(&error))
    }

    /// Every template of the account, page by page: `ListEmailTemplates`.
    pub async fn list_templates(&self, account: &SesAccount) -> Result<Vec<TemplateSummary>, TemplateError> {
        let client = self.sdk_client(account);
        let mut templates = Vec::new();
        let mut next = None;
        loop {
            let page = client
                .list_email_templates()
                .page_size(LIST_PAGE)
                .set_next_token(next)
                .send()
                .await
                .map_err(|error| template_error(&error))?;
            templates.extend(page.templates_metadata().iter().filter_map(|metadata| {
                Some(TemplateSummary {
                    name: metadata.template_name()?.to_owned(),
                    created_at: metadata
                        .created_timestamp()
                        .and_then(|at| OffsetDateTime::from_unix_timestamp(at.secs()).ok()),
                })
            }));
            next = page.next_token().filter(|token| !token.is_empty()).map(str::to_owned);
            if next.is_none() {
                return Ok(templates);
            }
        }
    }

    /// Whether the account has a template of that name: `GetEmailTemplate`.
    pub async fn template_exists(&self, account: &SesAccount, name: &str) -> Result<bool, TemplateError> {
        match self
            .sdk_client(account)
            .get_email_template()
            .template_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => match template_error(&error) {
                TemplateError::NotFound => Ok(false),
                other => Err(other),
            },
        }
    }
}
