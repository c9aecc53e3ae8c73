//! Event fields a rule can name, resolved once at compile time.

use crate::decode::{Body, Event};
use chrono::{DateTime, Utc};
use std::borrow::Cow;

/// A field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The event field `organization`.
    Organization,
    /// The event field `type`.
    Type,
    /// The event field `event_id`.
    EventId,
    /// The event field `run_id`.
    RunId,
    /// The event field `intent`.
    Intent,
    /// The event field `outcome`.
    Outcome,
    /// The event field `model`.
    Model,
    /// The event field `failure_reason`.
    FailureReason,
    /// The event field `automation_id`.
    AutomationId,
    /// The event field `integration`.
    Integration,
    /// The event field `status_code`.
    StatusCode,
    /// The event field `error`.
    Error,
    /// The event field `automation_version`.
    AutomationVersion,
    /// The event field `trigger`.
    Trigger,
    /// The event field `request_id`.
    RequestId,
    /// The event field `stage`.
    Stage,
    /// The event field `channel`.
    Channel,
    /// The event field `latency_ms`.
    LatencyMs,
    /// The event field `duration_ms`.
    DurationMs,
    /// The event field `tokens_prompt`.
    TokensPrompt,
    /// The event field `tokens_completion`.
    TokensCompletion,
    /// The event field `occurred_at`.
    OccurredAt,
    /// The event field `intake_at`.
    IntakeAt,
    /// The W3C trace id (from the body, or the `traceparent` header).
    TraceId,
    /// The W3C span id (from the body, or the `traceparent` header).
    SpanId,
}

impl Field {
    /// The field a name refers to.
    pub fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "organization" => Field::Organization,
            "type" => Field::Type,
            "event_id" => Field::EventId,
            "run_id" => Field::RunId,
            "intent" => Field::Intent,
            "outcome" => Field::Outcome,
            "model" => Field::Model,
            "failure_reason" => Field::FailureReason,
            "automation_id" => Field::AutomationId,
            "integration" => Field::Integration,
            "status_code" => Field::StatusCode,
            "error" => Field::Error,
            "automation_version" => Field::AutomationVersion,
            "trigger" => Field::Trigger,
            "request_id" => Field::RequestId,
            "stage" => Field::Stage,
            "channel" => Field::Channel,
            "latency_ms" => Field::LatencyMs,
            "duration_ms" => Field::DurationMs,
            "tokens_prompt" => Field::TokensPrompt,
            "tokens_completion" => Field::TokensCompletion,
            "occurred_at" => Field::OccurredAt,
            "intake_at" => Field::IntakeAt,
            "trace_id" => Field::TraceId,
            "span_id" => Field::SpanId,
            _ => return None,
        })
    }

    /// The field as text (a label value or a condition's subject); `None` when the event has no such field.
    pub fn text<'e>(self, ev: &'e Event<'_>) -> Option<Cow<'e, str>> {
        fn b(s: &str) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(s))
        }
        fn ob<'e>(s: &'e Option<Cow<'_, str>>) -> Option<Cow<'e, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        match (self, &ev.body) {
            (Field::Organization, _) => b(&ev.organization),
            (Field::Type, _) => Some(Cow::Borrowed(ev.type_name())),
            (Field::EventId, _) => b(&ev.event_id),
            (Field::TraceId, _) => ob(&ev.trace_id),
            (Field::SpanId, _) => ob(&ev.span_id),
            (Field::RunId, Body::LlmRun(r)) => b(&r.run_id),
            (Field::Intent, Body::LlmRun(r)) => b(&r.intent),
            (Field::Outcome, Body::LlmRun(r)) => Some(Cow::Borrowed(r.outcome.as_str())),
            (Field::Outcome, Body::IntegrationCall(c)) => Some(Cow::Borrowed(c.outcome.as_str())),
            (Field::Outcome, Body::AutomationRun(a)) => Some(Cow::Borrowed(a.outcome.as_str())),
            (Field::Model, Body::LlmRun(r)) => ob(&r.model),
            (Field::FailureReason, Body::LlmRun(r)) => ob(&r.failure_reason),
            (Field::AutomationId, Body::LlmRun(r)) => ob(&r.automation_id),
            (Field::AutomationId, Body::IntegrationCall(c)) => ob(&c.automation_id),
            (Field::AutomationId, Body::AutomationRun(a)) => b(&a.automation_id),
            (Field::Integration, Body::IntegrationCall(c)) => b(&c.integration),
            (Field::StatusCode, Body::IntegrationCall(c)) => {
                c.status_code.map(|s| Cow::Owned(s.to_string()))
            }
            (Field::Error, Body::IntegrationCall(c)) => ob(&c.error),
            (Field::AutomationVersion, Body::AutomationRun(a)) => b(&a.automation_version),
            (Field::Trigger, Body::AutomationRun(a)) => ob(&a.trigger),
            (Field::RequestId, Body::RequestLifecycle(l)) => b(&l.request_id),
            (Field::Stage, Body::RequestLifecycle(l)) => Some(Cow::Borrowed(l.stage.as_str())),
            (Field::Channel, Body::RequestLifecycle(l)) => ob(&l.channel),
            _ => None,
        }
    }

    /// The field as a number.
    pub fn number(self, ev: &Event<'_>) -> Option<f64> {
        match (self, &ev.body) {
            (Field::LatencyMs, Body::LlmRun(r)) => Some(r.latency_ms),
            (Field::LatencyMs, Body::IntegrationCall(c)) => c.latency_ms,
            (Field::DurationMs, Body::AutomationRun(a)) => a.duration_ms,
            (Field::TokensPrompt, Body::LlmRun(r)) => r.tokens_prompt.map(|t| t as f64),
            (Field::TokensCompletion, Body::LlmRun(r)) => r.tokens_completion.map(|t| t as f64),
            (Field::StatusCode, Body::IntegrationCall(c)) => c.status_code.map(|t| t as f64),
            _ => None,
        }
    }

    /// The field as a timestamp.
    pub fn time(self, ev: &Event<'_>) -> Option<DateTime<Utc>> {
        match (self, &ev.body) {
            (Field::OccurredAt, _) => Some(ev.occurred_at),
            (Field::IntakeAt, Body::RequestLifecycle(l)) => l.intake_at,
            _ => None,
        }
    }

    /// Whether the field holds a number.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Field::LatencyMs
                | Field::DurationMs
                | Field::TokensPrompt
                | Field::TokensCompletion
                | Field::StatusCode
        )
    }

    /// Whether the field holds a timestamp.
    pub fn is_time(self) -> bool {
        matches!(self, Field::OccurredAt | Field::IntakeAt)
    }
}
