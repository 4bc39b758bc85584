//! Mail: the multipart message (text + HTML alternatives, the HTML with
//! the trend chart inline when there is one, and an attachment when there
//! is one)
//! and sending it with lettre over SMTP (STARTTLS, implicit TLS or plain
//! for a local relay, optional authentication).

use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use patrol_config::{MailSection, SmtpSecurity};

use crate::error::ReportError;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sender and recipients when no `[mail]` section exists (the message is
/// then only written as an `.eml` file).
const FALLBACK_FROM: &str = "patrol@localhost";
const FALLBACK_TO: &str = "root@localhost";

/// A file attached to the message.
#[derive(Debug, Clone, Copy)]
pub struct MailFile<'a> {
    pub name: &'a str,
    /// A MIME type, e.g. `text/csv; charset=utf-8` or `application/gzip`.
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// The bodies and attachment of one report message.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    pub attachment: Option<MailFile<'a>>,
    /// The trend chart (PNG), sent inline under
    /// [`crate::chart::CONTENT_ID`], which the HTML names as `cid:...`.
    pub chart_png: Option<&'a [u8]>,
}

fn mailbox(addr: &str, key: &str) -> Result<Mailbox, ReportError> {
    addr.parse::<Mailbox>()
        .map_err(|e| ReportError::Message(format!("mail.{key} `{addr}`: {e}")))
}

/// Build the message: multipart/mixed holding multipart/alternative
/// (text, HTML) and the attachment, if any; with a chart, the HTML
/// alternative is multipart/related (HTML, the PNG inline with its
/// Content-ID).
pub fn build_message(mail: Option<&MailSection>, parts: Parts<'_>) -> Result<Message, ReportError> {
    let (from, to): (&str, Vec<&str>) = match mail {
        Some(m) => (m.from.as_str(), m.to.iter().map(String::as_str).collect()),
        None => (FALLBACK_FROM, vec![FALLBACK_TO]),
    };
    // `message_id(None)` generates `<random@hostname>`: mail without a
    // Message-ID is often marked as spam.
    let mut builder = Message::builder()
        .from(mailbox(from, "from")?)
        .message_id(None)
        .subject(parts.subject);
    for addr in to {
        builder = builder.to(mailbox(addr, "to")?);
    }
    let alternative = match parts.chart_png {
        None => MultiPart::alternative_plain_html(parts.text.to_string(), parts.html.to_string()),
        Some(png) => {
            let png_type = ContentType::parse("image/png")
                .map_err(|e| ReportError::Message(format!("content type: {e}")))?;
            MultiPart::alternative()
                .singlepart(SinglePart::plain(parts.text.to_string()))
                .multipart(
                    MultiPart::related()
                        .singlepart(SinglePart::html(parts.html.to_string()))
                        .singlepart(
                            Attachment::new_inline(crate::chart::CONTENT_ID.to_string())
                                .body(png.to_vec(), png_type),
                        ),
                )
        }
    };
    let mut body = MultiPart::mixed().multipart(alternative);
    if let Some(file) = parts.attachment {
        let content_type = ContentType::parse(file.content_type)
            .map_err(|e| ReportError::Message(format!("content type: {e}")))?;
        body = body.singlepart(
            Attachment::new(file.name.to_string()).body(file.bytes.to_vec(), content_type),
        );
    }
    builder
        .multipart(body)
        .map_err(|e| ReportError::Message(e.to_string()))
}

fn transport(mail: &MailSection, host: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let (builder, default_port) = match mail.security {
        SmtpSecurity::Starttls => (T::starttls_relay(host).map_err(|e| e.to_string())?, 587),
        SmtpSecurity::Tls => (T::relay(host).map_err(|e| e.to_string())?, 465),
        SmtpSecurity::Plain => (T::builder_dangerous(host), 25),
    };
    let mut builder = builder
        .port(mail.smtp_port.unwrap_or(default_port))
        .timeout(Some(SMTP_TIMEOUT));
    if let (Some(user), Some(file)) = (&mail.username, &mail.password_file) {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read mail.password_file {}: {e}", file.display()))?;
        let password = password.trim_end_matches(['\r', '\n']).to_string();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

/// The whole SMTP exchange (connect, TLS, authentication, data) may take
/// at most this long, whatever lettre's per-connection timeout does: a
/// server that accepts and then stays silent must not hang a nightly job.
/// (While the test suite's SMTP sink failed to answer a bad login, a send
/// hung for minutes.)
pub const SEND_LIMIT: Duration = Duration::from_secs(120);

/// Send `message` per `mail`; returns the recipients. The error is the
/// reason in words (the caller says where the report was kept).
pub async fn send(mail: &MailSection, message: Message) -> Result<Vec<String>, String> {
    send_within(mail, message, SEND_LIMIT).await
}

/// [`send`] with another limit for the whole exchange.
pub async fn send_within(
    mail: &MailSection,
    message: Message,
    limit: Duration,
) -> Result<Vec<String>, String> {
    let envelope = message.envelope().clone();
    deliver(mail, &envelope, &message.formatted(), limit).await
}

/// Send an already formatted message (an `.eml` file) to the recipients
/// of `mail`; returns them.
pub async fn send_raw(mail: &MailSection, bytes: &[u8]) -> Result<Vec<String>, String> {
    // Settings may carry display names (`Patrol <patrol@example.org>`);
    // the envelope wants the bare addresses.
    let address = |a: &str, key: &str| -> Result<Address, String> {
        a.parse::<Mailbox>()
            .map(|m| m.email)
            .map_err(|e| format!("mail.{key} `{a}`: {e}"))
    };
    let from = address(&mail.from, "from")?;
    let to = mail
        .to
        .iter()
        .map(|a| address(a, "to"))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(Some(from), to).map_err(|e| e.to_string())?;
    deliver(mail, &envelope, bytes, SEND_LIMIT).await
}

async fn deliver(
    mail: &MailSection,
    envelope: &Envelope,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<String>, String> {
    let host = mail.smtp_host.as_deref().ok_or("no smtp_host in [mail]")?;
    let t = transport(mail, host)?;
    match tokio::time::timeout(limit, t.send_raw(envelope, bytes)).await {
        Ok(Ok(_)) => Ok(mail.to.clone()),
        Ok(Err(e)) => Err(format!("SMTP {host}: {e}")),
        Err(_) => Err(format!(
            "SMTP {host}: no answer within {} s",
            limit.as_secs_f64()
        )),
    }
}
