//! Field rules for accounts (docs/protocol.md §11.1): usernames, passwords, emails, phone numbers,
//! display names, status texts and device names.

use crate::error::ServerError;

/// Checks a username: 3-32 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit.
/// Returns the case-folded key that must be unique.
pub fn username(field: &'static str, s: &str) -> Result<String, ServerError> {
    let n = s.chars().count();
    if !(3..=32).contains(&n) {
        return Err(ServerError::invalid(field, "a username has 3 to 32 characters"));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(ServerError::invalid(field, "a username uses only letters, digits, '_', '.' and '-'"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ServerError::invalid(field, "a username starts with a letter or a digit"));
    }
    if s.to_ascii_lowercase().starts_with("deleted-") {
        return Err(ServerError::invalid(field, "usernames starting with 'deleted-' are reserved"));
    }
    Ok(s.to_ascii_lowercase())
}

/// 8 to 128 characters (the maximum bounds hashing cost).
pub fn password(field: &'static str, s: &str) -> Result<(), ServerError> {
    let n = s.chars().count();
    if n < 8 {
        return Err(ServerError::invalid(field, "a password has at least 8 characters"));
    }
    if n > 128 || s.len() > 512 {
        return Err(ServerError::invalid(field, "a password has at most 128 characters"));
    }
    Ok(())
}

/// A plausible address, at most 254 bytes. Returns the case-folded unique key.
pub fn email(field: &'static str, s: &str) -> Result<String, ServerError> {
    let ok = s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !ok {
        return Err(ServerError::invalid(field, "not an email address"));
    }
    Ok(s.to_lowercase())
}

/// E.164: '+' then 7 to 15 digits, not starting with 0.
pub fn phone(field: &'static str, s: &str) -> Result<(), ServerError> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    if !ok {
        return Err(ServerError::invalid(field, "a phone number is in E.164 form, e.g. +33612345678"));
    }
    Ok(())
}

/// Free text of at most `max` characters, without control characters.
pub fn text(field: &'static str, s: &str, max: usize) -> Result<(), ServerError> {
    if s.chars().count() > max {
        return Err(ServerError::invalid(field, format!("at most {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(ServerError::invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

/// A 6-digit code as typed by a person.
pub fn code(field: &'static str, s: &str) -> Result<(), ServerError> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServerError::invalid(field, "a code is 6 digits"));
    }
    Ok(())
}

/// The field checks of Register (§11.2), run before any rate limit, hash or store access. Returns
/// the case-folded username key and email key. Errors: `INVALID_ARGUMENT` naming the field.
pub fn register(
    username: &str,
    password: &str,
    display_name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    device_name: &str,
) -> Result<(String, Option<String>), ServerError> {
    let username_key = self::username("register.username", username)?;
    self::password("register.password", password)?;
    if let Some(d) = display_name {
        text("register.display_name", d, 64)?;
    }
    let email_key = email.map(|e| self::email("register.email", e)).transpose()?;
    if let Some(p) = phone {
        self::phone("register.phone", p)?;
    }
    text("register.device_name", device_name, 64)?;
    Ok((username_key, email_key))
}

/// The field checks of Login (§11.3) before any rate limit or store access. A password over 512
/// bytes is refused like a wrong one (`UNAUTHENTICATED`), so its length reveals nothing.
pub fn login(identifier: &str, password: &str, device_name: &str) -> Result<(), ServerError> {
    if identifier.is_empty() || identifier.len() > 254 {
        return Err(ServerError::invalid("login.identifier", "a username or email address"));
    }
    if password.len() > 512 {
        return Err(super::bad_credentials());
    }
    text("login.device_name", device_name, 64)
}

/// The field checks of VerifyCode (§11.4). Returns the case-folded key of the username to sign up
/// with, when one is given.
pub fn verify_code(
    phone: &str,
    code: &str,
    device_name: &str,
    username: Option<&str>,
) -> Result<Option<String>, ServerError> {
    self::phone("verify_code.phone", phone)?;
    self::code("verify_code.code", code)?;
    text("verify_code.device_name", device_name, 64)?;
    username.map(|u| self::username("verify_code.username", u)).transpose()
}

/// The field checks of ResetPassword (§11.9).
pub fn reset_password(code: &str, new_password: &str) -> Result<(), ServerError> {
    self::code("reset_password.code", code)?;
    password("reset_password.new_password", new_password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("u", "Alice_01").expect("ok"), "alice_01");
        for bad in ["al", "_alice", "al ice", "a".repeat(33).as_str(), "élodie", "deleted-7"] {
            assert!(username("u", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_emails_phones() {
        assert!(password("p", "short").is_err());
        assert!(password("p", &"x".repeat(129)).is_err());
        assert!(password("p", "long enough").is_ok());
        assert_eq!(email("e", "Bob@Example.org").expect("ok"), "bob@example.org");
        for bad in ["bob", "bob@", "@x.org", "bob@localhost", "b ob@x.org"] {
            assert!(email("e", bad).is_err(), "{bad:?}");
        }
        assert!(phone("p", "+33612345678").is_ok());
        for bad in ["33612345678", "+0612345678", "+33 6 12", "+123"] {
            assert!(phone("p", bad).is_err(), "{bad:?}");
        }
        assert!(code("c", "012345").is_ok());
        assert!(code("c", "12345").is_err());
    }
}
