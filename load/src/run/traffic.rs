//! The offered traffic: tenants picked by a Zipf law, channels in a given mix, SMS bodies whose
//! lengths sit on both sides of the segment boundaries, transactional and marketing priorities.

use common::Channel;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// Channel shares, e.g. `sms=70,whatsapp=20,email=10` (weights, not necessarily percentages).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChannelMix(Vec<(Channel, f64)>);

impl ChannelMix {
    /// The channels with a share above zero.
    pub(super) fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        self.0
            .iter()
            .filter(|(_, weight)| *weight > 0.0)
            .map(|(channel, _)| *channel)
    }
}

/// Parses `--channels`: `channel=weight` pairs separated by commas.
pub(super) fn parse_mix(raw: &str) -> Result<ChannelMix, String> {
    let mut mix = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (name, weight) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected channel=weight"))?;
        let channel = match name.trim() {
            "sms" => Channel::Sms,
            "whatsapp" => Channel::Whatsapp,
            "email" => Channel::Email,
            other => return Err(format!("{other:?}: channels are sms, whatsapp and email")),
        };
        let weight: f64 = weight
            .trim()
            .parse()
            .map_err(|e| format!("{pair:?}: the weight: {e}"))?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(format!("{pair:?}: the weight must be zero or more"));
        }
        if mix.iter().any(|(seen, _)| *seen == channel) {
            return Err(format!("{name:?} is given twice"));
        }
        mix.push((channel, weight));
    }
    if mix.iter().all(|(_, weight)| *weight == 0.0) {
        return Err("at least one channel needs a weight above zero".to_owned());
    }
    Ok(ChannelMix(mix))
}

/// SMS body lengths in characters: GSM-7 at 160/161 (1 or 2 segments) and 306/307 (2 or 3 of
/// 153), UCS-2 at 70/71 (1 or 2) and 134/135 (2 or 3 of 67), and a short one.
const GSM_LENGTHS: [usize; 5] = [60, 160, 161, 306, 307];
const UCS2_LENGTHS: [usize; 4] = [70, 71, 134, 135];

const GSM_TEXT: &str = "Spring sale at Acme: 30% off everything until Sunday, in store and online. ";
const UCS2_TEXT: &str = "✓ Votre commande est prête · 取件码 4821 · ";

/// One message to offer: its tenant (an index into the tenant list) and its envelope.
#[derive(Debug)]
pub(super) struct Planned {
    /// Index of its tenant.
    pub tenant: usize,
    /// Its message id.
    pub id: String,
    /// Its envelope (version 1, with the tenant id: valid on the log and over HTTP).
    pub envelope: Value,
}

/// Draws messages for a run.
pub(super) struct Traffic {
    tenants: Vec<String>,
    tenant_pick: WeightedIndex<f64>,
    mix: ChannelMix,
    channel_pick: WeightedIndex<f64>,
    transactional: f64,
    run: String,
    rng: StdRng,
    next: usize,
}

impl Traffic {
    /// Traffic over `tenants`, the k-th (from 1) carrying a share proportional to 1/k^`zipf`.
    pub(super) fn new(
        tenants: Vec<String>,
        zipf: f64,
        mix: ChannelMix,
        transactional: f64,
        run: String,
        seed: u64,
    ) -> Self {
        let weights = (1..=tenants.len()).map(|rank| 1.0 / (rank as f64).powf(zipf));
        let tenant_pick = WeightedIndex::new(weights).expect("at least one tenant, finite weights");
        let channel_pick =
            WeightedIndex::new(mix.0.iter().map(|(_, weight)| *weight)).expect("parse_mix keeps a positive weight");
        Self {
            tenants,
            tenant_pick,
            mix,
            channel_pick,
            transactional,
            run,
            rng: StdRng::seed_from_u64(seed),
            next: 0,
        }
    }

    /// The next message.
    pub(super) fn draw(&mut self) -> Planned {
        let n = self.next;
        self.next += 1;
        let tenant = self.tenant_pick.sample(&mut self.rng);
        let channel = self.mix.0[self.channel_pick.sample(&mut self.rng)].0;
        let transactional = rand::Rng::random_bool(&mut self.rng, self.transactional.clamp(0.0, 1.0));
        let id = format!("{}-{n}", self.run);
        let mut envelope = json!({
            "version": 1,
            "message_id": id,
            "tenant_id": self.tenants[tenant],
            "channel": channel.as_str(),
            "priority": if transactional { "transactional" } else { "marketing" },
        });
        let fields = envelope.as_object_mut().expect("an object");
        match channel {
            Channel::Sms => {
                fields.insert("to".into(), json!(format!("+1646555{:04}", n % 10_000)));
                let ucs2 = rand::Rng::random_bool(&mut self.rng, 0.2);
                let (text, lengths) = if ucs2 {
                    (UCS2_TEXT, &UCS2_LENGTHS[..])
                } else {
                    (GSM_TEXT, &GSM_LENGTHS[..])
                };
                let length = lengths[rand::Rng::random_range(&mut self.rng, 0..lengths.len())];
                fields.insert(
                    "body".into(),
                    json!(text.chars().cycle().take(length).collect::<String>()),
                );
            }
            Channel::Whatsapp => {
                fields.insert("to".into(), json!(format!("whatsapp:+1646555{:04}", n % 10_000)));
                // A template: free-form WhatsApp text is refused outside the 24-hour window.
                fields.insert(
                    "template".into(),
                    json!({"id": "HX0123456789abcdef0123456789abcdef", "variables": {"1": format!("{n}")}}),
                );
            }
            Channel::Email => {
                fields.insert("to".into(), json!(format!("customer{}@example.com", n % 10_000)));
                fields.insert("subject".into(), json!("Your Acme order has shipped"));
                fields.insert(
                    "body".into(),
                    json!("Hello, your order is on its way and should arrive within three days."),
                );
            }
        }
        Planned { tenant, id, envelope }
    }
}

#[cfg(test)]
mod tests {
    use common::segments::count_segments;

    use super::*;

    fn traffic_over(tenants: usize, zipf: f64, mix: &str) -> Traffic {
        let names = (0..tenants).map(|n| format!("t{n:03}")).collect();
        Traffic::new(names, zipf, parse_mix(mix).unwrap(), 0.2, "run".into(), 7)
    }

    #[test]
    fn mixes_parse_and_bad_ones_say_why() {
        assert_eq!(parse_mix("sms=70, whatsapp=20,email=10").unwrap().channels().count(), 3);
        assert_eq!(
            parse_mix("sms=1,email=0").unwrap().channels().collect::<Vec<_>>(),
            [Channel::Sms]
        );
        for (bad, says) in [
            ("sms", "expected channel=weight"),
            ("fax=1", "channels are"),
            ("sms=-1", "zero or more"),
            ("sms=1,sms=2", "given twice"),
            ("sms=0", "above zero"),
        ] {
            let error = parse_mix(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn tenants_follow_the_zipf_law() {
        let mut traffic = traffic_over(10, 1.0, "sms=1");
        let mut counts = [0_usize; 10];
        for _ in 0..100_000 {
            counts[traffic.draw().tenant] += 1;
        }
        // Shares 1/k over the harmonic number H(10) = 2.93: the first ~34%, the tenth ~3.4%.
        let share = |k: usize| counts[k] as f64 / 100_000.0;
        assert!((share(0) - 0.341).abs() < 0.01, "{counts:?}");
        assert!((share(9) - 0.034).abs() < 0.005, "{counts:?}");
        assert!(counts.windows(2).all(|pair| pair[0] > pair[1]), "{counts:?}");
        let mut even = traffic_over(4, 0.0, "sms=1");
        let mut counts = [0_usize; 4];
        for _ in 0..40_000 {
            counts[even.draw().tenant] += 1;
        }
        assert!(counts.iter().all(|count| (9_500..10_500).contains(count)), "{counts:?}");
    }

    #[test]
    fn envelopes_parse_and_sms_crosses_segment_boundaries() {
        let mut traffic = traffic_over(3, 1.0, "sms=60,whatsapp=20,email=20");
        let mut segments = std::collections::BTreeSet::new();
        let mut channels = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let planned = traffic.draw();
            let bytes = serde_json::to_vec(&planned.envelope).unwrap();
            let envelope = common::Envelope::parse(&bytes).unwrap();
            assert_eq!(envelope.message_id.as_str(), planned.id);
            channels.insert(envelope.channel.as_str());
            if envelope.channel == Channel::Sms {
                segments.insert(count_segments(planned.envelope["body"].as_str().unwrap()).segments);
            }
        }
        assert_eq!(channels.len(), 3);
        assert_eq!(segments.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    }
}
