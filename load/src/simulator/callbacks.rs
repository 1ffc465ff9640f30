//! Status progression and status callbacks, driven by one timer task that owns one
//! [`DelayQueue`]: no task sleeps per message.
//!
//! A created message is scheduled for `sent`; when a step comes due, the timer task updates the
//! message and, if it has a `StatusCallback`, spawns one short request task that POSTs the
//! signed callback. The next step is scheduled only once that callback was answered or given up
//! on, so one message's callbacks arrive in order (`sent`, then `delivered` or `undelivered`,
//! then `read` for WhatsApp). A failed attempt (non-2xx or no answer) goes back into the queue
//! with a doubling delay, up to [`CallbackSettings::max_attempts`](super::config::CallbackSettings).

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use common::twilio::signature::{SIGNATURE_HEADER, compute};
use common::twilio::status::TwilioStatus;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::DelayQueue;

use super::registry::Notice;
use super::state::{State, StoredMessage};

/// Why a callback attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The receiver answered with a status other than 2xx.
    #[error("the callback receiver answered {0}")]
    Status(u16),
    /// No answer: connection refused, reset, timeout.
    #[error("the callback could not be delivered")]
    Transport(#[source] reqwest::Error),
}

/// A status step of a created message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Carrier accepted it.
    Sent,
    /// Delivered, or undelivered when it is fated to fail.
    Final,
    /// WhatsApp read receipt.
    Read,
}

/// One signed callback on its way.
#[derive(Debug, Clone)]
pub(crate) struct Callback {
    sid: String,
    url: String,
    params: Vec<(String, String)>,
    signature: String,
    attempt: u32,
    next: Option<(Step, Duration)>,
}

/// What the timer task is asked to do after a delay.
#[derive(Debug)]
pub(crate) enum Job {
    /// Move a message to its next status.
    Step {
        /// The message.
        sid: String,
        /// The status step.
        step: Step,
    },
    /// Try a callback again.
    Retry(Callback),
    /// End an A2P brand's review (see [`accounts`](super::accounts)) and send its status callback.
    Brand {
        /// The brand registration.
        sid: String,
    },
    /// Suspend an approved brand and send its status callback.
    BrandSuspended {
        /// The brand registration.
        sid: String,
        /// The `FailureReason` reported.
        reason: String,
    },
    /// End a WhatsApp sender's review or verification and send its status callback.
    Sender {
        /// The sender.
        sid: String,
    },
    /// End a template's WhatsApp review and send its approval callback.
    Content {
        /// The template.
        sid: String,
    },
}

/// Hands jobs to the timer task.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    jobs: mpsc::UnboundedSender<(Job, Duration)>,
}

impl Scheduler {
    /// Schedules `job` after `delay`; ignored once the simulator stops.
    pub(crate) fn schedule(&self, job: Job, delay: Duration) {
        if self.jobs.send((job, delay)).is_err() {
            tracing::debug!("simulator timer stopped, job dropped");
        }
    }
}

/// Starts the timer task on `tracker`; it stops when `cancel` fires.
pub(crate) fn start(
    state: Arc<State>,
    http: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
) -> Scheduler {
    let (sender, receiver) = mpsc::unbounded_channel();
    let scheduler = Scheduler { jobs: sender };
    let timer = Timer {
        state,
        http,
        tracker: tracker.clone(),
        cancel,
        scheduler: scheduler.clone(),
    };
    tracker.spawn(timer.run(receiver));
    scheduler
}

struct Timer {
    state: Arc<State>,
    http: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
    scheduler: Scheduler,
}

impl Timer {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<(Job, Duration)>) {
        let mut queue: DelayQueue<Job> = DelayQueue::new();
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                job = jobs.recv() => match job {
                    Some((job, delay)) => {
                        queue.insert(job, delay);
                    }
                    None => break,
                },
                Some(expired) = poll_fn(|cx| queue.poll_expired(cx)) => self.handle(expired.into_inner()),
            }
        }
        tracing::debug!(pending = queue.len(), "simulator timer stopped");
    }

    fn handle(&self, job: Job) {
        match job {
            Job::Step { sid, step } => self.step(&sid, step),
            Job::Retry(callback) => self.post(callback),
            Job::Brand { sid } => {
                let notice = self.state.onboarding.complete_brand_review(&sid);
                self.notice_callback(&sid, notice);
            }
            Job::BrandSuspended { sid, reason } => {
                let notice = self.state.onboarding.suspend_brand(&sid, &reason);
                self.notice_callback(&sid, notice);
            }
            Job::Sender { sid } => {
                let notice = self.state.onboarding.complete_sender(&sid);
                self.notice_callback(&sid, notice);
            }
            Job::Content { sid } => {
                let notice = self.state.onboarding.complete_approval(&sid);
                self.notice_callback(&sid, notice);
            }
        }
    }

    /// Sends an onboarding object's signed status callback (a brand's, a sender's, a
    /// template's), if it changed and has somewhere to send it.
    fn notice_callback(&self, sid: &str, notice: Option<Notice>) {
        let Some(notice) = notice else {
            tracing::debug!(sid, "simulator change for an unknown object or one in another state");
            return;
        };
        let (Some(url), Some(token)) = (notice.url, self.state.token_of(&notice.account_sid)) else {
            return;
        };
        let signature = compute(&token, &url, &notice.params);
        self.post(Callback {
            sid: sid.to_owned(),
            url,
            params: notice.params,
            signature,
            attempt: 1,
            next: None,
        });
    }

    /// Applies a due status step and sends its callback (or schedules the next step).
    fn step(&self, sid: &str, step: Step) {
        let now = OffsetDateTime::now_utc();
        let timings = self.state.config.timings;
        let Some(message) = self.state.update(sid, |message| {
            message.status = match (step, message.failure) {
                (Step::Sent, _) => TwilioStatus::Sent,
                (Step::Final, Some(code)) => {
                    message.error_code = Some(code);
                    TwilioStatus::Undelivered
                }
                (Step::Final, None) => TwilioStatus::Delivered,
                (Step::Read, _) => TwilioStatus::Read,
            };
            if step == Step::Sent {
                message.date_sent = Some(now);
            }
            message.date_updated = now;
        }) else {
            tracing::warn!(sid, "simulator step for an unknown message");
            return;
        };
        let next = match step {
            Step::Sent => Some((Step::Final, timings.delivered_after)),
            Step::Final if message.whatsapp && message.failure.is_none() => Some((Step::Read, timings.read_after)),
            Step::Final | Step::Read => None,
        };
        match self.callback(&message, now, next) {
            Some(callback) => self.post(callback),
            None => self.schedule_next(sid, next),
        }
    }

    fn schedule_next(&self, sid: &str, next: Option<(Step, Duration)>) {
        if let Some((step, delay)) = next {
            self.scheduler.schedule(
                Job::Step {
                    sid: sid.to_owned(),
                    step,
                },
                delay,
            );
        }
    }

    /// The signed callback for the message's current status, if it asked for callbacks.
    fn callback(
        &self,
        message: &StoredMessage,
        now: OffsetDateTime,
        next: Option<(Step, Duration)>,
    ) -> Option<Callback> {
        let url = message.status_callback.clone()?;
        let token = self.state.token_of(&message.account_sid)?;
        let status = message.status.as_str().to_owned();
        let mut params = vec![
            ("MessageSid".to_owned(), message.sid.clone()),
            ("SmsSid".to_owned(), message.sid.clone()),
            ("MessageStatus".to_owned(), status.clone()),
            ("SmsStatus".to_owned(), status),
            ("AccountSid".to_owned(), message.account_sid.clone()),
            ("To".to_owned(), message.to.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ];
        if let Some(from) = &message.from {
            params.push(("From".to_owned(), from.clone()));
        }
        if let Some(service) = &message.messaging_service_sid {
            params.push(("MessagingServiceSid".to_owned(), service.clone()));
        }
        if let Some(code) = message.error_code {
            params.push(("ErrorCode".to_owned(), code.to_string()));
        }
        if matches!(message.status, TwilioStatus::Delivered | TwilioStatus::Undelivered) {
            params.push(("RawDlrDoneDate".to_owned(), raw_dlr_done_date(now)));
        }
        let signature = compute(&token, &url, &params);
        Some(Callback {
            sid: message.sid.clone(),
            url,
            params,
            signature,
            attempt: 1,
            next,
        })
    }

    /// Sends one attempt of `callback` from its own short task.
    fn post(&self, callback: Callback) {
        let state = Arc::clone(&self.state);
        let http = self.http.clone();
        let scheduler = self.scheduler.clone();
        let cancel = self.cancel.clone();
        let settings = state.config.callbacks;
        self.tracker.spawn(async move {
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = deliver(&http, &callback) => result,
            };
            match result {
                Ok(()) => {
                    state.count_callback_sent();
                    tracing::debug!(sid = %callback.sid, url = %callback.url, attempt = callback.attempt, "simulator callback delivered");
                }
                Err(error) if callback.attempt < settings.max_attempts => {
                    state.count_callback_failed(false);
                    tracing::debug!(sid = %callback.sid, url = %callback.url, attempt = callback.attempt, %error, "simulator callback failed, retrying");
                    let delay = settings
                        .retry_after
                        .saturating_mul(2u32.saturating_pow(callback.attempt.saturating_sub(1)));
                    let retry = Callback {
                        attempt: callback.attempt + 1,
                        ..callback
                    };
                    scheduler.schedule(Job::Retry(retry), delay);
                    return;
                }
                Err(error) => {
                    state.count_callback_failed(true);
                    tracing::info!(sid = %callback.sid, url = %callback.url, attempt = callback.attempt, %error, "simulator callback dropped");
                }
            }
            if let Some((step, delay)) = callback.next {
                scheduler.schedule(
                    Job::Step {
                        sid: callback.sid,
                        step,
                    },
                    delay,
                );
            }
        });
    }
}

/// POSTs one callback, form-encoded and signed.
async fn deliver(http: &reqwest::Client, callback: &Callback) -> Result<(), CallbackError> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&callback.params)
        .finish();
    let response = http
        .post(&callback.url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(SIGNATURE_HEADER, &callback.signature)
        .header(reqwest::header::USER_AGENT, "TwilioProxy/1.1")
        .body(body)
        .send()
        .await
        .map_err(CallbackError::Transport)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(CallbackError::Status(status.as_u16()))
    }
}

/// `RawDlrDoneDate` as carriers report it: `YYMMDDhhmm` in UTC.
fn raw_dlr_done_date(now: OffsetDateTime) -> String {
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        now.year().rem_euclid(100),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_dlr_done_date_is_yymmddhhmm() {
        let at = time::macros::datetime!(2026-03-04 05:06:07 UTC);
        assert_eq!(raw_dlr_done_date(at), "2603040506");
    }
}
