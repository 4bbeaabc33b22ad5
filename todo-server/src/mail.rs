//! Mail over SMTP (lettre, rustls with aws-lc): the [`Mailer`] the auth
//! services send reset and verification links with.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport as _};
use todo_core::{LinkBase, Mail, MailError, Mailer};
use zeroize::Zeroizing;

use crate::error::Error;

/// How long each network step of a mail may take (connecting, each read
/// and write).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `--smtp-*`, `--mail-from` and `--public-url`: where mail goes, and the
/// origin its links point to. Without `--smtp-url` the servers send no
/// mail: a reset asked for by login and address verification answer 503.
#[derive(Debug, Clone, clap::Args)]
pub struct MailSettings {
    /// The SMTP server: `smtp://host[:port]` (STARTTLS, required; port
    /// 587), `smtps://host[:port]` (TLS from the first byte; port 465) or
    /// `smtp+plain://host[:port]` (no TLS at all: only for a relay on this
    /// machine, or tests; port 25).
    #[arg(long, env = "TODO_SMTP_URL", requires_all = ["mail_from", "public_url"])]
    pub smtp_url: Option<String>,
    /// A file holding the SMTP user name on its first line and its
    /// password on the second (kept out of the command line and the
    /// environment).
    #[arg(long, env = "TODO_SMTP_CREDENTIALS_FILE", requires = "smtp_url")]
    pub smtp_credentials_file: Option<PathBuf>,
    /// Certificates (PEM) to trust for the SMTP server besides the public
    /// roots: a private CA's.
    #[arg(long, env = "TODO_SMTP_CA_FILE", requires = "smtp_url")]
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender: `todo@example.com` or `todo <todo@example.com>`.
    #[arg(long, env = "TODO_MAIL_FROM", requires = "smtp_url")]
    pub mail_from: Option<String>,
    /// The page's public origin (`https://todo.example.com`), which mailed
    /// links point to (configured, never taken from a request's `Host`),
    /// and passkeys are made for (their relying party: its host). Without
    /// it, no passkeys.
    #[arg(long, env = "TODO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Mails one account, and one recipient address, may be sent at once
    /// (reset and verification links together), per instance.
    #[arg(long, env = "TODO_MAIL_BURST", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub mail_burst: u32,
    /// Then one more each this many seconds.
    #[arg(long, env = "TODO_MAIL_PERIOD_SECS", default_value_t = 20 * 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mail_period_secs: u64,
}

impl MailSettings {
    /// The mailer and the links' origin, when `--smtp-url` is given.
    ///
    /// # Errors
    ///
    /// [`Error::Setting`] for a URL, sender or origin that cannot be used,
    /// [`Error::File`] for a credentials or CA file that cannot be read.
    pub fn mailer(&self) -> Result<Option<(SmtpMailer, LinkBase)>, Error> {
        let Some(url) = &self.smtp_url else {
            return Ok(None);
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::setting("--smtp-url", "must be smtp://, smtps:// or smtp+plain://")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // `host`, `host:port`, `[v6]` or `[v6]:port`
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, after)) => (host, Some(after.strip_prefix(':').unwrap_or("x"))),
                None => ("", None),
            },
            None => match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        if rest.contains('@') {
            return Err(Error::setting(
                "--smtp-url",
                "no user or password in the URL: put them in --smtp-credentials-file",
            ));
        }
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0))
            .map(|p| p.ok_or_else(|| Error::setting("--smtp-url", "the port must be 1 to 65535")))
            .transpose()?;
        let host_ok = if rest.starts_with('[') {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty() && !host.contains(['/', '@', '?', '#', ':', '[', ']'])
        };
        if !host_ok {
            return Err(Error::setting(
                "--smtp-url",
                "must be a host and an optional port, nothing else (credentials go in --smtp-credentials-file)",
            ));
        }
        let tls = || -> Result<TlsParameters, Error> {
            let mut builder = TlsParameters::builder(host.to_owned());
            if let Some(path) = &self.smtp_ca_file {
                let pem = std::fs::read(path).map_err(|e| Error::file(path, e))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| Error::setting("--smtp-ca-file", e))?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| Error::setting("--smtp-url", e))
        };
        let (tls, default_port) = match scheme {
            "smtp" => (Tls::Required(tls()?), 587),
            "smtps" => (Tls::Wrapper(tls()?), 465),
            "smtp+plain" => (Tls::None, 25),
            _ => {
                return Err(Error::setting(
                    "--smtp-url",
                    "must be smtp://, smtps:// or smtp+plain://",
                ));
            }
        };
        let mut transport = SmtpTransport::builder_dangerous(host)
            .port(port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(path) = &self.smtp_credentials_file {
            // lettre would send them in the clear.
            if scheme == "smtp+plain" {
                return Err(Error::setting(
                    "--smtp-credentials-file",
                    "credentials are never sent over smtp+plain:// (no TLS): use smtp:// or smtps://",
                ));
            }
            let text =
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?);
            let mut lines = text.lines();
            let (Some(user), Some(password)) = (lines.next(), lines.next()) else {
                return Err(Error::setting(
                    "--smtp-credentials-file",
                    "must hold the user name on its first line and the password on its second",
                ));
            };
            transport =
                transport.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        let from = self
            .mail_from
            .as_deref()
            .unwrap_or_default()
            .parse::<Mailbox>()
            .map_err(|e| Error::setting("--mail-from", e))?;
        let links = LinkBase::parse(self.public_url.as_deref().unwrap_or_default())
            .map_err(|e| Error::setting("--public-url", e))?;
        // Greet as the public host (lettre's default is our address).
        let transport = transport.hello_name(client_id(links.host()));
        Ok(Some((
            SmtpMailer {
                transport: transport.build(),
                from,
            },
            links,
        )))
    }
}

/// The EHLO name for a `--public-url` host: its name, or its address as
/// an address literal (`host`, `host:port`, `[v6]`, `[v6]:port`).
fn client_id(host: &str) -> ClientId {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(v6, _)| v6),
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => ClientId::Ipv4(v4),
        Ok(std::net::IpAddr::V6(v6)) => ClientId::Ipv6(v6),
        Err(_) => ClientId::Domain(name.to_owned()),
    }
}

/// Sends each message on its own SMTP connection (mail here is rare: a
/// reset, a verification), each network step within 10 s (lettre's
/// timeout is per read and write, not for the whole message: the HTTP
/// adapter runs mail on threads of its own, a bounded number at once).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer for SmtpMailer {
    fn send(&self, mail: &Mail) -> Result<(), MailError> {
        // An address only: as a mailbox, `victim<thief@example.net>` would
        // go to the thief (review of session 27, 14).
        let to = mail
            .to
            .as_str()
            .parse::<lettre::Address>()
            .map(|address| Mailbox::new(None, address))
            .map_err(|e| MailError(Box::new(e)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| MailError(Box::new(e)))?;
        self.transport
            .send(&message)
            .map(drop)
            .map_err(|e| MailError(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> MailSettings {
        MailSettings {
            smtp_url: None,
            smtp_credentials_file: None,
            smtp_ca_file: None,
            mail_from: None,
            public_url: None,
            mail_burst: 3,
            mail_period_secs: 1200,
        }
    }

    fn settings(url: &str) -> MailSettings {
        MailSettings {
            smtp_url: Some(url.to_owned()),
            mail_from: Some("todo <todo@example.com>".to_owned()),
            public_url: Some("https://todo.example.com".to_owned()),
            ..none()
        }
    }

    #[test]
    fn smtp_urls_name_a_host_a_port_and_how_tls_is_had() {
        assert!(none().mailer().unwrap().is_none());
        for good in [
            "smtp://mail.example.com",
            "smtps://mail.example.com:465",
            "smtp+plain://127.0.0.1:2525",
            "smtp+plain://[::1]:2525",
            "smtp+plain://[::1]",
        ] {
            assert!(settings(good).mailer().unwrap().is_some(), "{good}");
        }
        for bad in [
            "http://mail.example.com",
            "mail.example.com",
            "smtp://user:secret@mail.example.com",
            "smtp://mail.example.com:99999",
            "smtp://mail.example.com:0",
            "smtp://::1",
            "smtp://[::1",
            "smtp://",
        ] {
            assert!(settings(bad).mailer().is_err(), "{bad}");
        }
        let mut no_origin = settings("smtp://mail.example.com");
        no_origin.public_url = Some("http://todo.example.com".to_owned());
        assert!(no_origin.mailer().is_err());
        for (host, id) in [
            (
                "todo.example.com:8443",
                ClientId::Domain("todo.example.com".to_owned()),
            ),
            ("192.0.2.1", ClientId::Ipv4("192.0.2.1".parse().unwrap())),
            (
                "[2001:db8::1]",
                ClientId::Ipv6("2001:db8::1".parse().unwrap()),
            ),
            (
                "[2001:db8::1]:8443",
                ClientId::Ipv6("2001:db8::1".parse().unwrap()),
            ),
        ] {
            assert_eq!(client_id(host), id, "{host}");
        }
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("smtp");
        std::fs::write(&credentials, "user\npassword\n").unwrap();
        let mut plain = settings("smtp+plain://127.0.0.1:2525");
        plain.smtp_credentials_file = Some(credentials.clone());
        assert!(plain.mailer().is_err(), "no password in the clear");
        let mut tls = settings("smtps://mail.example.com");
        tls.smtp_credentials_file = Some(credentials);
        assert!(tls.mailer().unwrap().is_some());
    }
}
