//! Connecting to PostgreSQL as libpq users expect: a URL or key=value
//! string, the `PG*` variables for what it leaves out, `sslmode` from
//! `disable` to `verify-full`, and per-session settings that make the
//! server notice a vanished host within about a lease.

use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::backend::{BackendError, redact};

/// What libpq's `sslmode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// TLS if the server offers it, unverified (libpq's `prefer`).
    Prefer,
    /// TLS, unverified unless a root certificate is given (libpq's `require`).
    Require,
    /// TLS, the chain verified, any host name.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

/// How to open a session: everything parsed, and the TLS set-up (root
/// certificates read) once, not per session.
pub struct Connector {
    config: Config,
    /// `None` for sslmode=disable.
    tls: Option<MakeRustlsConnect>,
    server: String,
}

impl Connector {
    pub fn new(url: &str, lease: Duration) -> Result<Connector, BackendError> {
        let server = redact(url);
        let bad = |what: String| BackendError::Config {
            server: server.clone(),
            what,
        };
        // sslmode and sslrootcert are taken out before the URL is parsed:
        // the client library knows only disable/prefer/require.
        let (rest, params) = split_tls_params(url);
        let mut config: Config = rest.parse().map_err(|e| {
            bad(format!(
                "the URL cannot be read ({e}); write postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for h in h.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = env("PGPORT") {
                let port = p
                    .parse()
                    .map_err(|_| bad(format!("PGPORT={p:?} is not a port number")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::geteuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            });
            if let Some(u) = user {
                config.user(&u);
            }
        }
        if config.get_dbname().is_none() {
            if let Some(d) = env("PGDATABASE") {
                config.dbname(&d);
            }
        }
        if config.get_password().is_none() {
            if let Some(p) = env("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_connect_timeout().is_none() {
            let secs = env("PGCONNECT_TIMEOUT")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(10);
            config.connect_timeout(Duration::from_secs(secs.max(2)));
        }
        if config.get_application_name().is_none() {
            config.application_name("dblaunch");
        }
        // The client side of "a vanished peer is noticed within a lease".
        config
            .keepalives(true)
            .keepalives_idle(keepalive_idle(lease))
            .keepalives_interval(keepalive_interval(lease))
            .keepalives_retries(2)
            .tcp_user_timeout(lease / 2);
        let mode = params
            .sslmode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".to_owned());
        let tls = match mode.as_str() {
            "disable" => Tls::Disable,
            "allow" | "prefer" => Tls::Prefer,
            "require" => Tls::Require,
            "verify-ca" => Tls::VerifyCa,
            "verify-full" => Tls::VerifyFull,
            other => {
                return Err(bad(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let root_cert = params.sslrootcert.or_else(|| env("PGSSLROOTCERT"));
        let tls = match tls {
            Tls::Disable => None,
            mode => Some(tls_connector(mode, root_cert.as_deref(), &server)?),
        };
        Ok(Connector {
            config,
            tls,
            server,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// A new session, with the settings every dblaunch session needs.
    pub fn connect(&self, lease: Duration) -> Result<Client, BackendError> {
        let mut client = match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
        .map_err(|e| self.classify(&e))?;
        // The server side: a host that vanished (partition, dead machine)
        // is noticed and its session ended within about a lease, and a
        // waiter that died leaves the queue.
        let settings = format!(
            "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
             SET tcp_keepalives_count = 2; SET tcp_user_timeout = {user_timeout}; \
             SET client_connection_check_interval = 500; SET idle_session_timeout = 0; \
             SET statement_timeout = 0; SET lock_timeout = 0",
            idle = keepalive_idle(lease).as_secs().max(1),
            interval = keepalive_interval(lease).as_secs().max(1),
            user_timeout = (lease / 2).as_millis(),
        );
        client
            .batch_execute(&settings)
            .map_err(|e| self.classify(&e))?;
        Ok(client)
    }

    /// How to send a cancel for a session of this server.
    pub fn canceller(&self, client: &Client) -> Box<dyn Fn() + Send> {
        let token = client.cancel_token();
        match self.tls.clone() {
            None => Box::new(move || {
                let _ = token.cancel_query(postgres::NoTls);
            }),
            Some(tls) => Box::new(move || {
                let _ = token.cancel_query(tls.clone());
            }),
        }
    }

    /// Sorts a failure into "cannot reach" and "refused", with the server's
    /// own words (which never contain the password).
    pub fn classify(&self, e: &postgres::Error) -> BackendError {
        let server = self.server.clone();
        if let Some(db) = e.as_db_error() {
            use postgres::error::SqlState;
            let code = db.code();
            let what = db.message().to_owned();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_CATALOG_NAME
                || *code == SqlState::INSUFFICIENT_PRIVILEGE
                || *code == SqlState::TOO_MANY_CONNECTIONS
            {
                return BackendError::Refused { server, what };
            }
            // The server going down or away (admin shutdown, crash,
            // starting up): as if it could not be reached.
            if code.code().starts_with("57P") || code.code().starts_with("08") {
                return BackendError::Unreachable { server, what };
            }
            return BackendError::Failed { server, what };
        }
        let mut what = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            what = format!("{what}: {s}");
            source = s.source();
        }
        BackendError::Unreachable { server, what }
    }
}

/// The TLS set-up of `mode` (not Disable), with the root certificates of
/// `root_cert` (a file, or "system") or the system's.
fn tls_connector(
    mode: Tls,
    root_cert: Option<&str>,
    server: &str,
) -> Result<MakeRustlsConnect, BackendError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |what: String| BackendError::Config {
        server: server.to_owned(),
        what,
    };
    let mut roots = RootCertStore::empty();
    let explicit = root_cert.filter(|p| *p != "system");
    match explicit {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    // libpq: `require` with a root certificate given verifies the chain.
    let check = match mode {
        Tls::Prefer => Check::Nothing,
        Tls::Require if explicit.is_none() => Check::Nothing,
        Tls::Require | Tls::VerifyCa => Check::Chain,
        Tls::VerifyFull | Tls::Disable => Check::ChainAndName,
    };
    if check != Check::Nothing && roots.is_empty() {
        return Err(bad(
            "sslmode asks to verify the server's certificate, but there is no root certificate to verify it with: set sslrootcert (or PGSSLROOTCERT) to the CA's file".to_owned(),
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let config = if check == Check::ChainAndName {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .ok();
        let verifier = Lenient {
            check,
            webpki,
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

fn keepalive_idle(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_secs(1))
}

fn keepalive_interval(lease: Duration) -> Duration {
    (lease / 8).max(Duration::from_secs(1))
}

#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or a key=value
/// string.
fn split_tls_params(url: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let mut take = |k: &str, v: &str| match k {
        "sslmode" => {
            params.sslmode = Some(v.to_owned());
            true
        }
        "sslrootcert" => {
            params.sslrootcert = Some(v.to_owned());
            true
        }
        _ => false,
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), params);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k, v)
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, params)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k, v)
            })
            .collect();
        (kept.join(" "), params)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// libpq's `prefer`/`require` (no verification) and `verify-ca` (the chain,
/// not the name). Signatures are always checked.
#[derive(Debug)]
struct Lenient {
    check: Check,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(webpki) = &self.webpki else {
            return Err(rustls::Error::General("no root certificates".into()));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_of_the_url() {
        let (rest, p) = split_tls_params(
            "postgres://u@h/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem",
        );
        assert_eq!(rest, "postgres://u@h/db?application_name=x");
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/ca.pem"));
        let (rest, p) = split_tls_params("host=h sslmode=require dbname=d");
        assert_eq!(rest, "host=h dbname=d");
        assert_eq!(p.sslmode.as_deref(), Some("require"));
    }
}
