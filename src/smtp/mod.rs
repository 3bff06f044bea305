//! SMTP (RFC 5321 + ESMTP), as a sans-IO state machine plus a thin driver.
