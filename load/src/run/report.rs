//! What a run measured, from the messages' status histories, the dispatcher's `/proc` samples
//! and the simulator's statistics: a JSON report and an SVG chart a person reads at a glance.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use common::store::MessageRecord;
use common::{Channel, MessageStatus};
use load::simulator::SimulatorStats;
use plotters::prelude::*;
use serde::Serialize;
use time::OffsetDateTime;

/// A message offered by the run and what became of it.
pub(super) struct Outcome {
    /// Index of its tenant (by volume rank).
    pub tenant: usize,
    /// When the stack acknowledged it (the HTTP answer, or the log's append).
    pub accepted: OffsetDateTime,
    /// Its record at the end, if the store has it.
    pub record: Option<MessageRecord>,
}

/// One sample of the dispatcher process.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Sample {
    /// Seconds since the run's first message.
    pub second: f64,
    /// CPU seconds used so far (user + system).
    pub cpu_seconds: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
}

/// What the run was set up as, for the report.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Setup {
    /// Where messages entered (`http` or `kafka`).
    pub target: String,
    /// Who sent them (`demo` or `simulator`).
    pub provider: String,
    /// Messages offered.
    pub messages: usize,
    /// Offered messages/s (0: as fast as accepted).
    pub offered_rate: f64,
    /// Tenants.
    pub tenants: usize,
    /// Zipf exponent of tenant volume.
    pub zipf: f64,
    /// SMS numbers per tenant.
    pub senders_per_tenant: usize,
    /// Cells per second per number.
    pub sender_rate: f64,
    /// The channel mix as given.
    pub channels: String,
    /// Share of transactional messages.
    pub transactional: f64,
    /// The machine: logical CPUs and the model.
    pub machine: String,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub(super) struct Percentiles {
    /// How many values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            count: values.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// One tenant's share and latency.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TenantLatency {
    /// The tenant.
    pub tenant: String,
    /// Messages offered.
    pub messages: usize,
    /// Accepted to sent, milliseconds.
    pub accepted_to_sent_ms: Percentiles,
}

/// Per-second counts.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Second {
    /// Seconds since the run's first message.
    pub second: usize,
    /// Messages accepted in that second.
    pub accepted: usize,
    /// Messages that reached `sent` in it.
    pub sent: usize,
    /// Messages that reached `delivered` in it.
    pub delivered: usize,
    /// Accepted to sent of the messages sent in it, milliseconds.
    pub p50_ms: f64,
    /// The same, 99th percentile.
    pub p99_ms: f64,
    /// CPU cores the dispatcher used in it.
    pub dispatcher_cores: f64,
    /// The dispatcher's resident memory at its end, MiB.
    pub dispatcher_rss_mib: f64,
}

/// Pacing as the run saw it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Pacing {
    /// SMS tenants with a standing backlog (median wait above 2 s), whose numbers had work all
    /// the time.
    pub backlogged_tenants: usize,
    /// Of those: SMS segments sent per second over the cells their numbers allow, mean and
    /// lowest (1.0 = every cell used).
    pub efficiency_mean: Option<f64>,
    /// The lowest tenant's efficiency.
    pub efficiency_min: Option<f64>,
    /// One-second windows in which a sender went over its rate, as the provider simulator saw
    /// the calls (`None` with the demo provider: nothing outside the dispatcher sees them).
    pub violations: Option<usize>,
}

/// The dispatcher's cost.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Cost {
    /// CPU seconds of the dispatcher process over the run.
    pub cpu_seconds: f64,
    /// The same per 1,000 messages that reached `sent`.
    pub cpu_ms_per_1000_messages: f64,
    /// Its peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// What the process is (the all-in-one process also runs the admin API).
    pub process: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    /// How the run was set up.
    pub setup: Setup,
    /// When it started (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Seconds from the first message accepted to the last one sent.
    pub seconds_to_last_sent: f64,
    /// Messages accepted per second while offering.
    pub accepted_per_second: f64,
    /// Messages that reached `sent` per second, first accepted to last sent.
    pub sent_per_second: f64,
    /// Messages by final status (`absent`: the store has no record).
    pub outcomes: BTreeMap<String, usize>,
    /// Accepted to sent, milliseconds.
    pub accepted_to_sent_ms: Percentiles,
    /// Sent to delivered, milliseconds.
    pub sent_to_delivered_ms: Percentiles,
    /// Transactional messages only, accepted to sent.
    pub transactional_accepted_to_sent_ms: Percentiles,
    /// Each tenant's latency, by volume rank.
    pub tenants: Vec<TenantLatency>,
    /// Spread of the tenants' latency (tenants with at least 20 messages sent): the lowest and
    /// highest medians and 99th percentiles.
    pub fairness: Fairness,
    /// Pacing.
    pub pacing: Pacing,
    /// The dispatcher's cost.
    pub cost: Cost,
    /// Second by second.
    pub seconds: Vec<Second>,
    /// The simulator's counters (provider `simulator` only).
    pub simulator: Option<SimulatorStats>,
}

/// The spread of per-tenant latency.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Fairness {
    /// Tenants counted.
    pub tenants: usize,
    /// The lowest tenant median, ms.
    pub min_p50_ms: f64,
    /// The highest tenant median, ms.
    pub max_p50_ms: f64,
    /// The lowest tenant 99th percentile, ms.
    pub min_p99_ms: f64,
    /// The highest tenant 99th percentile, ms.
    pub max_p99_ms: f64,
}

fn ms_between(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    ((to - from).as_seconds_f64() * 1_000.0).max(0.0)
}

fn reached(record: &MessageRecord, status: MessageStatus) -> Option<OffsetDateTime> {
    record
        .history
        .iter()
        .find(|change| change.status == status)
        .map(|change| change.at)
}

/// Inputs of [`Report::build`] besides the outcomes.
pub(super) struct Measured<'a> {
    /// The setup.
    pub setup: Setup,
    /// Tenant names by rank.
    pub tenant_names: &'a [String],
    /// The first message's acceptance.
    pub started_at: OffsetDateTime,
    /// When the last message was accepted.
    pub offered_until: OffsetDateTime,
    /// The dispatcher's samples.
    pub samples: &'a [Sample],
    /// The dispatcher's name.
    pub process: String,
    /// The simulator's statistics.
    pub simulator: Option<SimulatorStats>,
}

impl Report {
    /// Computes the report.
    pub(super) fn build(outcomes: &[Outcome], measured: Measured<'_>) -> Self {
        let Measured {
            setup,
            tenant_names,
            started_at,
            offered_until,
            samples,
            process,
            simulator,
        } = measured;
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        let mut to_sent = Vec::new();
        let mut transactional = Vec::new();
        let mut to_delivered = Vec::new();
        let mut per_tenant: Vec<Vec<f64>> = vec![Vec::new(); tenant_names.len()];
        let mut offered_per_tenant = vec![0_usize; tenant_names.len()];
        let mut seconds: BTreeMap<usize, (usize, usize, usize, Vec<f64>)> = BTreeMap::new();
        let second_of = |at: OffsetDateTime| (at - started_at).as_seconds_f64().max(0.0) as usize;
        let mut last_sent = started_at;
        // SMS tenants' sent segments and when, for pacing.
        let mut sms_sent: Vec<Vec<(OffsetDateTime, u32, f64)>> = vec![Vec::new(); tenant_names.len()];
        for outcome in outcomes {
            offered_per_tenant[outcome.tenant] += 1;
            seconds.entry(second_of(outcome.accepted)).or_default().0 += 1;
            let Some(record) = &outcome.record else {
                *statuses.entry("absent".to_owned()).or_default() += 1;
                continue;
            };
            *statuses.entry(record.status.as_str().to_owned()).or_default() += 1;
            let Some(sent) = reached(record, MessageStatus::Sent) else {
                continue;
            };
            let wait = ms_between(outcome.accepted, sent);
            to_sent.push(wait);
            per_tenant[outcome.tenant].push(wait);
            if record.priority == common::Priority::Transactional {
                transactional.push(wait);
            }
            last_sent = last_sent.max(sent);
            let bucket = seconds.entry(second_of(sent)).or_default();
            bucket.1 += 1;
            bucket.3.push(wait);
            if record.channel == Channel::Sms {
                sms_sent[outcome.tenant].push((sent, record.segments, wait));
            }
            if let Some(delivered) = reached(record, MessageStatus::Delivered) {
                to_delivered.push(ms_between(sent, delivered));
                seconds.entry(second_of(delivered)).or_default().2 += 1;
            }
        }
        let tenants: Vec<TenantLatency> = tenant_names
            .iter()
            .zip(per_tenant)
            .zip(&offered_per_tenant)
            .map(|((tenant, waits), offered)| TenantLatency {
                tenant: tenant.clone(),
                messages: *offered,
                accepted_to_sent_ms: Percentiles::of(waits),
            })
            .collect();
        let counted: Vec<&TenantLatency> = tenants.iter().filter(|t| t.accepted_to_sent_ms.count >= 20).collect();
        let extreme = |pick: fn(&Percentiles) -> f64, max: bool| {
            let values = counted.iter().map(|t| pick(&t.accepted_to_sent_ms));
            if max {
                values.fold(0.0, f64::max)
            } else {
                values.fold(f64::INFINITY, f64::min)
            }
        };
        let fairness = Fairness {
            tenants: counted.len(),
            min_p50_ms: extreme(|p| p.p50, false),
            max_p50_ms: extreme(|p| p.p50, true),
            min_p99_ms: extreme(|p| p.p99, false),
            max_p99_ms: extreme(|p| p.p99, true),
        };

        let allowed_per_tenant = setup.senders_per_tenant as f64 * setup.sender_rate;
        let efficiencies: Vec<f64> = sms_sent
            .iter_mut()
            .filter(|sent| sent.len() >= 20)
            .filter_map(|sent| {
                let mut waits: Vec<f64> = sent.iter().map(|(_, _, wait)| *wait).collect();
                waits.sort_by(f64::total_cmp);
                if waits[waits.len() / 2] < 2_000.0 {
                    return None;
                }
                sent.sort_by_key(|(at, _, _)| *at);
                // Up to the 90th percentile: in the tail the numbers run dry one by one (each
                // recipient sticks to one number), which is no longer a standing backlog.
                let end = (sent.len() - 1) * 9 / 10;
                let span = (sent[end].0 - sent[0].0).as_seconds_f64();
                // Segments sent after the first message, over the cells allowed meanwhile.
                let cells: u32 = sent[1..=end].iter().map(|(_, segments, _)| segments).sum();
                (span >= 2.0).then(|| f64::from(cells) / (allowed_per_tenant * span))
            })
            .collect();
        let pacing = Pacing {
            backlogged_tenants: efficiencies.len(),
            efficiency_mean: (!efficiencies.is_empty())
                .then(|| efficiencies.iter().sum::<f64>() / efficiencies.len() as f64),
            efficiency_min: efficiencies.iter().copied().reduce(f64::min),
            violations: simulator.as_ref().map(|stats| stats.violations.len()),
        };

        let sent_count = to_sent.len();
        let first = samples.first().copied();
        let last = samples.last().copied();
        let cpu_seconds = match (first, last) {
            (Some(first), Some(last)) => last.cpu_seconds - first.cpu_seconds,
            _ => f64::NAN,
        };
        let cost = Cost {
            cpu_seconds,
            cpu_ms_per_1000_messages: cpu_seconds * 1_000_000.0 / sent_count.max(1) as f64,
            peak_rss_mib: samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
            process,
        };

        let mut cpu_by_second: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for pair in samples.windows(2) {
            let cores = (pair[1].cpu_seconds - pair[0].cpu_seconds) / (pair[1].second - pair[0].second).max(1e-3);
            cpu_by_second.insert(pair[1].second as usize, (cores, pair[1].rss_mib));
        }
        let last_second = seconds.keys().chain(cpu_by_second.keys()).copied().max().unwrap_or(0);
        let seconds: Vec<Second> = (0..=last_second)
            .map(|second| {
                let (accepted, sent, delivered, waits) = seconds.remove(&second).unwrap_or_default();
                let waits = Percentiles::of(waits);
                let (cores, rss) = cpu_by_second.get(&second).copied().unwrap_or((f64::NAN, f64::NAN));
                Second {
                    second,
                    accepted,
                    sent,
                    delivered,
                    p50_ms: waits.p50,
                    p99_ms: waits.p99,
                    dispatcher_cores: cores,
                    dispatcher_rss_mib: rss,
                }
            })
            .collect();
        let offering = (offered_until - started_at).as_seconds_f64().max(1e-3);
        let to_last_sent = (last_sent - started_at).as_seconds_f64().max(1e-3);
        Self {
            accepted_per_second: outcomes.len() as f64 / offering,
            sent_per_second: sent_count as f64 / to_last_sent,
            seconds_to_last_sent: to_last_sent,
            setup,
            started_at,
            outcomes: statuses,
            accepted_to_sent_ms: Percentiles::of(to_sent),
            sent_to_delivered_ms: Percentiles::of(to_delivered),
            transactional_accepted_to_sent_ms: Percentiles::of(transactional),
            tenants,
            fairness,
            pacing,
            cost,
            seconds,
            simulator,
        }
    }

    /// The report in a few lines, for the terminal.
    pub(super) fn summary(&self) -> String {
        let p = |p: &Percentiles| {
            format!(
                "p50 {:.0} / p90 {:.0} / p99 {:.0} / max {:.0} ms",
                p.p50, p.p90, p.p99, p.max
            )
        };
        let efficiency = match (self.pacing.efficiency_mean, self.pacing.efficiency_min) {
            (Some(mean), Some(min)) => format!(
                "{:.1}% of the allowed cells (lowest tenant {:.1}%) over {} backlogged tenants",
                mean * 100.0,
                min * 100.0,
                self.pacing.backlogged_tenants
            ),
            _ => "no tenant had a standing backlog".to_owned(),
        };
        let violations = self
            .pacing
            .violations
            .map_or("not observable with the demo provider".to_owned(), |n| n.to_string());
        format!(
            "{} messages ({} via {}): accepted {:.0}/s, sent {:.0}/s ({:.1} s to the last sent)\n\
             outcomes: {:?}\n\
             accepted -> sent: {}\n\
             transactional:    {}\n\
             sent -> delivered: {}\n\
             fairness: tenant medians {:.0}-{:.0} ms, tenant p99s {:.0}-{:.0} ms ({} tenants)\n\
             pacing: {efficiency}; rate violations: {violations}\n\
             dispatcher ({}): {:.1} CPU-s, {:.1} ms per 1,000 messages, peak RSS {:.0} MiB",
            self.setup.messages,
            self.setup.provider,
            self.setup.target,
            self.accepted_per_second,
            self.sent_per_second,
            self.seconds_to_last_sent,
            self.outcomes,
            p(&self.accepted_to_sent_ms),
            p(&self.transactional_accepted_to_sent_ms),
            p(&self.sent_to_delivered_ms),
            self.fairness.min_p50_ms,
            self.fairness.max_p50_ms,
            self.fairness.min_p99_ms,
            self.fairness.max_p99_ms,
            self.fairness.tenants,
            self.cost.process,
            self.cost.cpu_seconds,
            self.cost.cpu_ms_per_1000_messages,
            self.cost.peak_rss_mib,
        )
    }

    /// Writes `report.json` and `report.svg` into `out`.
    pub(super) fn write(&self, out: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(out.join("report.json"), json)?;
        self.chart(&out.join("report.svg"))
            .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))
            .context("report.svg")
    }

    fn chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "load run: {} messages, {} tenants (Zipf {}), {} via {}, on {}",
            self.setup.messages,
            self.setup.tenants,
            self.setup.zipf,
            self.setup.provider,
            self.setup.target,
            self.setup.machine
        );
        let root = root.titled(&title, ("sans-serif", 22))?;
        let panels = root.split_evenly((2, 2));
        let seconds = self.seconds.len().max(1) as f64;

        // Throughput.
        let peak = self
            .seconds
            .iter()
            .map(|s| s.accepted.max(s.sent).max(s.delivered))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("messages per second", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..seconds, 0.0..peak * 1.1)?;
        chart.configure_mesh().x_desc("seconds").draw()?;
        for (label, color, pick) in [
            ("accepted", BLUE, (|s: &Second| s.accepted) as fn(&Second) -> usize),
            ("sent", GREEN, |s: &Second| s.sent),
            ("delivered", MAGENTA, |s: &Second| s.delivered),
        ] {
            chart
                .draw_series(LineSeries::new(
                    self.seconds.iter().map(|s| (s.second as f64, pick(s) as f64)),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;

        // Latency over time.
        let top = self
            .seconds
            .iter()
            .map(|s| s.p99_ms)
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&panels[1])
            .caption(
                "accepted -> sent, ms (messages sent in each second)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..seconds, 0.0..top * 1.1)?;
        chart.configure_mesh().x_desc("seconds").draw()?;
        for (label, color, pick) in [
            ("p50", GREEN, (|s: &Second| s.p50_ms) as fn(&Second) -> f64),
            ("p99", RED, |s: &Second| s.p99_ms),
        ] {
            chart
                .draw_series(LineSeries::new(
                    self.seconds
                        .iter()
                        .filter(|s| s.sent > 0)
                        .map(|s| (s.second as f64, pick(s))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;

        // Fairness: each tenant's latency, by volume rank.
        let ranks = self.tenants.len().max(1) as f64;
        let top = self
            .tenants
            .iter()
            .map(|t| t.accepted_to_sent_ms.p99)
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("per tenant, accepted -> sent, ms (by volume rank)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..ranks, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("tenant rank (0: the most messages)")
            .draw()?;
        for (label, color, pick) in [
            ("p50", GREEN, (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64),
            ("p99", RED, |p: &Percentiles| p.p99),
        ] {
            chart
                .draw_series(
                    self.tenants
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| t.accepted_to_sent_ms.count > 0)
                        .map(|(rank, t)| Circle::new((rank as f64, pick(&t.accepted_to_sent_ms)), 3, color.filled())),
                )?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;

        // The dispatcher's cost.
        let cores = self
            .seconds
            .iter()
            .map(|s| s.dispatcher_cores)
            .filter(|v| v.is_finite())
            .fold(0.5, f64::max);
        let rss = self.cost.peak_rss_mib.max(1.0);
        let mut chart = ChartBuilder::on(&panels[3])
            .caption(
                format!(
                    "dispatcher: CPU cores (left), resident MiB (right); {:.0} ms CPU per 1,000 sent",
                    self.cost.cpu_ms_per_1000_messages
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0.0..seconds, 0.0..cores * 1.1)?
            .set_secondary_coord(0.0..seconds, 0.0..rss * 1.2);
        chart.configure_mesh().x_desc("seconds").draw()?;
        chart.configure_secondary_axes().draw()?;
        chart
            .draw_series(LineSeries::new(
                self.seconds
                    .iter()
                    .filter(|s| s.dispatcher_cores.is_finite())
                    .map(|s| (s.second as f64, s.dispatcher_cores)),
                BLUE.stroke_width(2),
            ))?
            .label("CPU cores")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_secondary_series(LineSeries::new(
                self.seconds
                    .iter()
                    .filter(|s| s.dispatcher_rss_mib.is_finite())
                    .map(|s| (s.second as f64, s.dispatcher_rss_mib)),
                BLACK.stroke_width(2),
            ))?
            .label("resident MiB")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use common::store::StatusChange;
    use common::{CampaignId, MessageId, Priority, TenantId};

    use super::*;

    fn record(
        tenant: &str,
        n: usize,
        accepted: OffsetDateTime,
        sent_ms: i64,
        delivered_ms: Option<i64>,
    ) -> MessageRecord {
        let mut history = vec![StatusChange {
            status: MessageStatus::Queued,
            at: accepted,
            reason: None,
        }];
        history.push(StatusChange {
            status: MessageStatus::Sent,
            at: accepted + time::Duration::milliseconds(sent_ms),
            reason: None,
        });
        if let Some(ms) = delivered_ms {
            history.push(StatusChange {
                status: MessageStatus::Delivered,
                at: accepted + time::Duration::milliseconds(sent_ms + ms),
                reason: None,
            });
        }
        MessageRecord {
            tenant_id: TenantId::parse(tenant).unwrap(),
            message_id: MessageId::parse(format!("m{n}")).unwrap(),
            campaign_id: None::<CampaignId>,
            channel: Channel::Sms,
            recipient: "+14155550100".into(),
            priority: if n.is_multiple_of(2) {
                Priority::Transactional
            } else {
                Priority::Marketing
            },
            segments: 2,
            status: history.last().unwrap().status,
            reason: None,
            provider_message_id: None,
            accepted_at: accepted,
            updated_at: history.last().unwrap().at,
            history,
        }
    }

    fn setup() -> Setup {
        Setup {
            target: "http".into(),
            provider: "demo".into(),
            messages: 100,
            offered_rate: 0.0,
            tenants: 2,
            zipf: 1.0,
            senders_per_tenant: 1,
            sender_rate: 10.0,
            channels: "sms=1".into(),
            transactional: 0.5,
            machine: "test".into(),
        }
    }

    #[test]
    fn latencies_outcomes_fairness_and_pacing_come_from_the_histories() {
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let names = vec!["a".to_owned(), "b".to_owned()];
        let mut outcomes = Vec::new();
        // Tenant a: 60 two-segment SMS accepted at once, sent one every 200 ms (5 msg/s =
        // 10 cells/s: its one number's whole rate), each delivered 3 s later.
        for n in 0..60 {
            outcomes.push(Outcome {
                tenant: 0,
                accepted: start,
                record: Some(record("a", n, start, 200 * n as i64 + 100, Some(3_000))),
            });
        }
        // Tenant b: 20 messages, each sent 50 ms after it was accepted; one never recorded.
        for n in 0..20 {
            let accepted = start + time::Duration::seconds(n as i64 / 4);
            outcomes.push(Outcome {
                tenant: 1,
                accepted,
                record: Some(record("b", 100 + n, accepted, 50, None)),
            });
        }
        outcomes.push(Outcome {
            tenant: 1,
            accepted: start,
            record: None,
        });
        let samples = [
            Sample {
                second: 0.0,
                cpu_seconds: 1.0,
                rss_mib: 50.0,
            },
            Sample {
                second: 1.0,
                cpu_seconds: 1.5,
                rss_mib: 70.0,
            },
            Sample {
                second: 2.0,
                cpu_seconds: 1.8,
                rss_mib: 60.0,
            },
        ];
        let report = Report::build(
            &outcomes,
            Measured {
                setup: setup(),
                tenant_names: &names,
                started_at: start,
                offered_until: start + time::Duration::seconds(5),
                samples: &samples,
                process: "engageninja".into(),
                simulator: None,
            },
        );
        assert_eq!(report.outcomes.get("delivered"), Some(&60));
        assert_eq!(report.outcomes.get("sent"), Some(&20));
        assert_eq!(report.outcomes.get("absent"), Some(&1));
        assert_eq!(report.accepted_to_sent_ms.count, 80);
        assert_eq!(report.accepted_to_sent_ms.max, 11_900.0);
        assert_eq!(report.sent_to_delivered_ms.p50, 3_000.0);
        assert_eq!(report.tenants[0].messages, 60);
        assert_eq!(report.tenants[1].messages, 21);
        assert_eq!(report.tenants[1].accepted_to_sent_ms.p99, 50.0);
        assert_eq!(report.fairness.tenants, 2);
        assert_eq!(report.fairness.min_p50_ms, 50.0);
        // Only tenant a waited (median 6 s); up to its 90th percentile, 53 two-segment messages
        // in 10.6 s of one number at 10 cells/s: 106 / 106 cells.
        assert_eq!(report.pacing.backlogged_tenants, 1);
        let efficiency = report.pacing.efficiency_mean.unwrap();
        assert!((efficiency - 1.0).abs() < 1e-9, "{efficiency}");
        assert_eq!(report.pacing.violations, None);
        assert!((report.cost.cpu_seconds - 0.8).abs() < 1e-9);
        assert!(
            (report.cost.cpu_ms_per_1000_messages - 10_000.0).abs() < 1e-6,
            "0.8 CPU-s over 80 messages"
        );
        assert_eq!(report.cost.peak_rss_mib, 70.0);
        assert_eq!(report.seconds[0].accepted, 65);
        assert_eq!(report.seconds[0].sent, 5 + 4);
        assert!((report.seconds[1].dispatcher_cores - 0.5).abs() < 1e-9);

        let dir = tempfile::tempdir().unwrap();
        report.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("report.svg")).unwrap();
        assert!(svg.contains("messages per second"), "the chart has its panels");
        assert!(svg.contains("<polyline"), "and lines");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(json["outcomes"]["delivered"], 60);
    }
}
