//! Options of the Google sinks (`serve`) and of the `google-auth` command.
//!
//! Nothing here is secret: the client secret and the tokens live in the files the options name,
//! and are read only by [`crate::sinks::google::token`] and [`crate::sinks::google::auth`], whose types redact them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub const DEFAULT_CALENDAR_API_URL: &str = "https://www.googleapis.com/calendar/v3";
pub const DEFAULT_PEOPLE_API_URL: &str = "https://people.googleapis.com/v1";
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// What a cancelled (`installd`) match becomes in Google Calendar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CancelledPolicy {
    /// Kept, with the title prefixed `INSTÄLLD: `.
    #[default]
    Keep,
    /// Deleted.
    Delete,
}

/// Google Calendar and Google Contacts sinks of `serve`.
#[derive(Debug, Clone, Args)]
pub struct GoogleOpts {
    /// OAuth token file (google-auth JSON, as the Python service's token.json); enables the
    /// Google sinks. Refreshed tokens are written back to it.
    #[arg(long, env = "GOOGLE_TOKEN_FILE")]
    pub google_token_file: Option<PathBuf>,
    /// OAuth client secret file from Google Cloud Console (used when the token file lacks the
    /// client id and secret, and by `google-auth`).
    #[arg(long, env = "GOOGLE_CREDENTIALS_FILE")]
    pub google_credentials_file: Option<PathBuf>,
    /// Calendar to write the matches to (`primary`, or an id like `…@group.calendar.google.com`).
    #[arg(long, env = "GOOGLE_CALENDAR_ID", default_value = "primary")]
    pub google_calendar_id: String,
    /// Keep the other referees in Google Contacts (when GOOGLE_TOKEN_FILE is set).
    #[arg(long, env = "GOOGLE_CONTACTS_ENABLED", default_value_t = true,
          action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub google_contacts_enabled: bool,
    /// Cancelled matches: `keep` (title prefixed `INSTÄLLD: `) or `delete`.
    #[arg(long, env = "GOOGLE_CANCELLED", value_enum, default_value_t = CancelledPolicy::Keep)]
    pub google_cancelled: CancelledPolicy,
    /// Base URL of the Calendar API.
    #[arg(long, env = "GOOGLE_CALENDAR_API_URL", default_value = DEFAULT_CALENDAR_API_URL)]
    pub google_calendar_api_url: String,
    /// Base URL of the People API.
    #[arg(long, env = "GOOGLE_PEOPLE_API_URL", default_value = DEFAULT_PEOPLE_API_URL)]
    pub google_people_api_url: String,
    /// OAuth token endpoint (refresh).
    #[arg(long, env = "GOOGLE_TOKEN_URL", default_value = DEFAULT_TOKEN_URL)]
    pub google_token_url: String,
    /// First step of the retry backoff, in milliseconds (tests shorten it).
    #[arg(long, env = "GOOGLE_RETRY_BASE_MS", default_value_t = 1000, hide = true,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub google_retry_base_ms: u64,
}

impl GoogleOpts {
    /// Google sinks off.
    pub fn none() -> Self {
        GoogleOpts {
            google_token_file: None,
            google_credentials_file: None,
            google_calendar_id: "primary".into(),
            google_contacts_enabled: true,
            google_cancelled: CancelledPolicy::Keep,
            google_calendar_api_url: DEFAULT_CALENDAR_API_URL.into(),
            google_people_api_url: DEFAULT_PEOPLE_API_URL.into(),
            google_token_url: DEFAULT_TOKEN_URL.into(),
            google_retry_base_ms: 1000,
        }
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.google_retry_base_ms)
    }
}

impl Default for GoogleOpts {
    fn default() -> Self {
        GoogleOpts::none()
    }
}

/// Options of `google-auth`: the installed-app flow that writes the token file.
#[derive(Debug, Clone, Args)]
pub struct GoogleAuthOpts {
    /// OAuth client secret file ("Desktop app" client) downloaded from Google Cloud Console.
    #[arg(long, env = "GOOGLE_CREDENTIALS_FILE")]
    pub google_credentials_file: PathBuf,
    /// Where to write the token (the file `serve` reads).
    #[arg(long, env = "GOOGLE_TOKEN_FILE")]
    pub google_token_file: PathBuf,
    /// Google's authorization endpoint.
    #[arg(long, env = "GOOGLE_AUTH_URL", default_value = DEFAULT_AUTH_URL)]
    pub google_auth_url: String,
    /// OAuth token endpoint.
    #[arg(long, env = "GOOGLE_TOKEN_URL", default_value = DEFAULT_TOKEN_URL)]
    pub google_token_url: String,
    /// Port of the loopback redirect on 127.0.0.1 (0: any free port). Fix it to forward the port
    /// over SSH when the browser runs on another machine.
    #[arg(long, env = "GOOGLE_AUTH_PORT", default_value_t = 0)]
    pub port: u16,
    /// Only the Calendar scope (no Google Contacts).
    #[arg(long)]
    pub no_contacts: bool,
    /// How long to wait for the browser, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}
