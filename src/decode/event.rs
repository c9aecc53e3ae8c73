//! The validated event: what every later stage sees.

use chrono::{DateTime, Utc};
use std::borrow::Cow;

/// One valid Hestyna event. Strings borrow from the record's bytes where they can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Unique id; the idempotency key downstream.
    pub event_id: Cow<'a, str>,
    /// When it happened, normalised to UTC.
    pub occurred_at: DateTime<Utc>,
    /// The organization (tenant) it belongs to.
    pub organization: Cow<'a, str>,
    /// Contract version; 1 when absent.
    pub schema_version: i64,
    /// W3C trace id (32 lowercase hex digits), from the body or the `traceparent` header.
    pub trace_id: Option<Cow<'a, str>>,
    /// W3C span id (16 lowercase hex digits).
    pub span_id: Option<Cow<'a, str>>,
    /// What is specific to the event's type.
    pub body: Body<'a>,
}

impl Event<'_> {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self.body {
            Body::LlmRun(_) => EventType::LlmRun,
            Body::IntegrationCall(_) => EventType::IntegrationCall,
            Body::AutomationRun(_) => EventType::AutomationRun,
            Body::RequestLifecycle(_) => EventType::RequestLifecycle,
            Body::Unknown { .. } => EventType::Unknown,
        }
    }

    /// The `type` field as it was sent.
    pub fn type_name(&self) -> &str {
        match &self.body {
            Body::Unknown { type_name } => type_name,
            _ => self.event_type().as_str(),
        }
    }
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    /// An LLM run.
    LlmRun(LlmRun<'a>),
    /// A call to an integration.
    IntegrationCall(IntegrationCall<'a>),
    /// A run of an automation.
    AutomationRun(AutomationRun<'a>),
    /// A step of a request from intake to resolution.
    RequestLifecycle(RequestLifecycle<'a>),
    /// A type this version does not know: counted and forwarded, never dead-lettered.
    Unknown {
        /// The type as sent.
        type_name: Cow<'a, str>,
    },
}

/// The event types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// An LLM run.
    LlmRun,
    /// A call to an integration.
    IntegrationCall,
    /// A run of an automation.
    AutomationRun,
    /// A step of a request from intake to resolution.
    RequestLifecycle,
    /// A type this version does not know (forwarded, not derived).
    Unknown,
}

impl EventType {
    /// Every known type (not `Unknown`).
    pub const KNOWN: [EventType; 4] = [
        EventType::LlmRun,
        EventType::IntegrationCall,
        EventType::AutomationRun,
        EventType::RequestLifecycle,
    ];

    /// The `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LlmRun => "llm_run",
            EventType::IntegrationCall => "integration_call",
            EventType::AutomationRun => "automation_run",
            EventType::RequestLifecycle => "request_lifecycle",
            EventType::Unknown => "unknown",
        }
    }

    /// The type named by a `type` value; `Unknown` for anything else.
    pub fn from_name(name: &str) -> EventType {
        match name {
            "llm_run" => EventType::LlmRun,
            "integration_call" => EventType::IntegrationCall,
            "automation_run" => EventType::AutomationRun,
            "request_lifecycle" => EventType::RequestLifecycle,
            _ => EventType::Unknown,
        }
    }
}

/// Declares a closed set of string values with its stable names.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $(#[doc = concat!("`", $text, "`.")] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a wire name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

string_enum!(
    /// How an LLM run ended.
    LlmOutcome { Success = "success", Failure = "failure", Timeout = "timeout", Cancelled = "cancelled" }
);
string_enum!(
    /// How an integration call ended.
    IntegrationOutcome { Success = "success", Failure = "failure" }
);
string_enum!(
    /// How an automation run ended.
    AutomationOutcome { Success = "success", Failure = "failure", Cancelled = "cancelled" }
);
string_enum!(
    /// A request's lifecycle stage.
    Stage {
        Intake = "intake",
        Assigned = "assigned",
        InProgress = "in_progress",
        Waiting = "waiting",
        Resolved = "resolved",
        Reopened = "reopened",
    }
);

/// `type = "llm_run"`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRun<'a> {
    /// The run's id.
    pub run_id: Cow<'a, str>,
    /// The intent the run served.
    pub intent: Cow<'a, str>,
    /// How it ended.
    pub outcome: LlmOutcome,
    /// Model latency in milliseconds, >= 0.
    pub latency_ms: f64,
    /// Prompt tokens.
    pub tokens_prompt: Option<u64>,
    /// Completion tokens.
    pub tokens_completion: Option<u64>,
    /// The model.
    pub model: Option<Cow<'a, str>>,
    /// Why it failed (failures and timeouts).
    pub failure_reason: Option<Cow<'a, str>>,
    /// The automation it ran for.
    pub automation_id: Option<Cow<'a, str>>,
}

/// `type = "integration_call"`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationCall<'a> {
    /// The integration's slug.
    pub integration: Cow<'a, str>,
    /// How it ended.
    pub outcome: IntegrationOutcome,
    /// The call's latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// The downstream status code.
    pub status_code: Option<u64>,
    /// The downstream error.
    pub error: Option<Cow<'a, str>>,
    /// The automation it ran for.
    pub automation_id: Option<Cow<'a, str>>,
}

/// `type = "automation_run"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomationRun<'a> {
    /// The automation it ran for.
    pub automation_id: Cow<'a, str>,
    /// An integer or a string on the wire; kept as text (it is a label value).
    pub automation_version: Cow<'a, str>,
    /// How it ended.
    pub outcome: AutomationOutcome,
    /// The run's duration in milliseconds.
    pub duration_ms: Option<f64>,
    /// What started it (`schedule`, `webhook`, ...).
    pub trigger: Option<Cow<'a, str>>,
}

/// `type = "request_lifecycle"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLifecycle<'a> {
    /// The request's id (the key of its lifecycle events).
    pub request_id: Cow<'a, str>,
    /// The lifecycle stage.
    pub stage: Stage,
    /// When the request was taken in (sent on `resolved`), in UTC.
    pub intake_at: Option<DateTime<Utc>>,
    /// The channel the request came in on.
    pub channel: Option<Cow<'a, str>>,
}
