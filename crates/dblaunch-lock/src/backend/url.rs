//! The backend's URL: the variable that gives it, and how it is shown in
//! messages (never with its password).

/// `DBLAUNCH_BACKEND`: a backend URL; overrides the manifest's.
pub const BACKEND_ENV: &str = "DBLAUNCH_BACKEND";

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host… → postgres://user@host…
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon..rest_start + at, "");
            }
        }
    }
    // …?password=… and key=value "password=…"
    let mut cleaned = String::with_capacity(out.len());
    let mut rest = out.as_str();
    loop {
        let end = rest.find(['&', ' ', '?']).unwrap_or(rest.len());
        let part = &rest[..end];
        cleaned.push_str(if part.starts_with("password=") {
            "password=***"
        } else {
            part
        });
        if end == rest.len() {
            break;
        }
        cleaned.push_str(&rest[end..end + 1]);
        rest = &rest[end + 1..];
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://ops:s3cret@db.internal:5432/locks?sslmode=require"),
            "postgres://ops@db.internal:5432/locks?sslmode=require"
        );
        assert_eq!(
            redact("postgres://ops@db/locks?password=s3cret&sslmode=require"),
            "postgres://ops@db/locks?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=db user=ops password=s3cret dbname=locks"),
            "host=db user=ops password=*** dbname=locks"
        );
        assert_eq!(redact("postgres://db/locks"), "postgres://db/locks");
    }
}
