//! Quiet hours (TCPA): the daily window of the recipient's local time in which a text may go.
//!
//! A North American number's area code gives the time zones its holder may be in and the state
//! or province (`data/nanp_area_codes.tsv`, generated from libphonenumber by
//! `data/nanp_area_codes.py`); a number it says nothing about is taken to be in the tenant's
//! zone. A message is inside the window when it is inside in every zone the number may be in,
//! so that an area code spanning two zones is held for the later one. Local times are read
//! through the IANA time zone database (bundled with `jiff`), so a window holds across a
//! daylight-saving change: 08:00 is 08:00 on the wall clock, whatever the offset that day.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

/// The area codes, as shipped.
const AREA_CODES: &str = include_str!("../data/nanp_area_codes.tsv");

/// A window or zone that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuietHoursError {
    /// Not `HH:MM-HH:MM` with hours 00-24 and minutes 00-59.
    #[error("{0:?} is not a window such as 08:00-21:00")]
    Window(String),
    /// Not a time zone of the IANA database.
    #[error("{0:?} is not an IANA time zone such as America/New_York")]
    Zone(String),
}

/// A daily window of local time, from `start` (inclusive) to `end` (exclusive), in minutes of
/// the day. One that ends before it starts spans midnight; one that ends where it starts is the
/// whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
}

impl Window {
    /// 08:00 to 21:00, the TCPA's hours for telephone solicitations.
    pub const TCPA: Window = Window {
        start: 8 * 60,
        end: 21 * 60,
    };

    /// A window from two `HH:MM` times (`24:00` for the end of the day).
    pub fn from_times(start: &str, end: &str) -> Result<Self, QuietHoursError> {
        let whole = || QuietHoursError::Window(format!("{start}-{end}"));
        Ok(Self {
            start: minutes(start).ok_or_else(whole)? % (24 * 60),
            end: minutes(end).ok_or_else(whole)?,
        })
    }

    /// The start, as `HH:MM`.
    pub fn start(self) -> String {
        hh_mm(self.start)
    }

    /// The end, as `HH:MM`.
    pub fn end(self) -> String {
        hh_mm(self.end)
    }

    /// Whether the minute of the day lies inside.
    fn contains(self, minute: u16) -> bool {
        let end = self.end % (24 * 60);
        match self.start.cmp(&end) {
            std::cmp::Ordering::Less => self.start <= minute && minute < end,
            std::cmp::Ordering::Greater => minute >= self.start || minute < end,
            // 00:00-24:00, or any window that ends where it starts.
            std::cmp::Ordering::Equal => true,
        }
    }
}

/// Minutes of the day of `HH:MM` (00:00 to 24:00).
fn minutes(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (minutes < 60 && (hours < 24 || (hours == 24 && minutes == 0))).then_some(hours * 60 + minutes)
}

fn hh_mm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

impl FromStr for Window {
    type Err = QuietHoursError;

    /// Parses `HH:MM-HH:MM`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| QuietHoursError::Window(text.to_owned()))?;
        Self::from_times(start.trim(), end.trim())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start(), self.end())
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    zone: TimeZone,
}

impl Zone {
    /// The zone of that name.
    pub fn named(name: &str) -> Result<Self, QuietHoursError> {
        let zone = TimeZone::get(name).map_err(|_| QuietHoursError::Zone(name.to_owned()))?;
        Ok(Self {
            name: name.to_owned(),
            zone,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The minute of the day `at` is there.
    fn minute_at(&self, at: Timestamp) -> u16 {
        let time = at.to_zoned(self.zone.clone()).time();
        u16::try_from(time.hour()).unwrap_or(0) * 60 + u16::try_from(time.minute()).unwrap_or(0)
    }

    /// When the window next starts there, after `at`: today's start, tomorrow's, or the day
    /// after's (a start skipped by a daylight-saving gap falls just after it).
    fn starts_after(&self, at: Timestamp, window: Window) -> impl Iterator<Item = Timestamp> + '_ {
        let today = at.to_zoned(self.zone.clone()).date();
        let (hour, minute) = (
            i8::try_from(window.start / 60).unwrap_or(0),
            i8::try_from(window.start % 60).unwrap_or(0),
        );
        (0..3).filter_map(move |days| {
            let date = today.checked_add(jiff::Span::new().days(days)).ok()?;
            let start = date.at(hour, minute, 0, 0).to_zoned(self.zone.clone()).ok()?;
            Some(start.timestamp()).filter(|start| *start > at)
        })
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Zone::named(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// What an area code says of a number: the zones its holder may be in, and the state or
/// province (two letters), when known.
#[derive(Debug)]
pub struct Place {
    /// The time zones.
    pub zones: Vec<Zone>,
    /// The state or province.
    pub region: Option<&'static str>,
}

/// The shipped area codes, read once.
fn area_codes() -> &'static HashMap<u16, Place> {
    static CODES: OnceLock<HashMap<u16, Place>> = OnceLock::new();
    CODES.get_or_init(|| {
        AREA_CODES
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let code = fields.next()?.parse().ok()?;
                let zones = fields
                    .next()?
                    .split('&')
                    .filter_map(|name| Zone::named(name).ok())
                    .collect();
                let region = fields.next().filter(|region| !region.is_empty());
                Some((code, Place { zones, region }))
            })
            .collect()
    })
}

/// What the area code of an E.164 number (`+1` and ten digits) says; `None` outside North
/// America or for an area code the data does not know.
pub fn place_of(e164: &str) -> Option<&'static Place> {
    let digits = e164.strip_prefix("+1")?;
    if digits.len() != 10 {
        return None;
    }
    area_codes()
        .get(&digits[..3].parse().ok()?)
        .filter(|place| !place.zones.is_empty())
}

/// The zones a tenant may choose for recipients whose number names none: every zone of the
/// shipped area codes, and UTC.
pub const TENANT_ZONES: [&str; 42] = [
    "America/Adak",
    "America/Anchorage",
    "America/Anguilla",
    "America/Antigua",
    "America/Barbados",
    "America/Boise",
    "America/Cayman",
    "America/Chicago",
    "America/Denver",
    "America/Dominica",
    "America/Edmonton",
    "America/Fort_Nelson",
    "America/Grand_Turk",
    "America/Grenada",
    "America/Halifax",
    "America/Jamaica",
    "America/Los_Angeles",
    "America/Lower_Princes",
    "America/Montserrat",
    "America/Nassau",
    "America/New_York",
    "America/North_Dakota/Center",
    "America/Phoenix",
    "America/Port_of_Spain",
    "America/Puerto_Rico",
    "America/Regina",
    "America/Santo_Domingo",
    "America/St_Johns",
    "America/St_Kitts",
    "America/St_Lucia",
    "America/St_Thomas",
    "America/St_Vincent",
    "America/Toronto",
    "America/Tortola",
    "America/Vancouver",
    "America/Winnipeg",
    "Atlantic/Bermuda",
    "Pacific/Guam",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
    "Pacific/Saipan",
    "UTC",
];

/// The stricter windows some states set for marketing texts, by state or province (two
/// letters): deployment configuration.
pub type StateWindows = BTreeMap<String, Window>;

/// The earliest instant, from `now` on, at which every window is open in every zone; `now`
/// itself when they are. The windows are tried together, then the last alone (a state's
/// window is the law; a tenant's that never meets it gives way).
pub fn next_opening(now: OffsetDateTime, zones: &[&Zone], windows: &[Window]) -> OffsetDateTime {
    let Ok(at) = Timestamp::from_nanosecond(now.unix_timestamp_nanos()) else {
        return now;
    };
    let open = |at: Timestamp, windows: &[Window]| {
        zones
            .iter()
            .all(|zone| windows.iter().all(|window| window.contains(zone.minute_at(at))))
    };
    let tried = [windows, windows.last().map(std::slice::from_ref).unwrap_or_default()];
    for windows in tried {
        if open(at, windows) {
            return now;
        }
        let mut starts: Vec<Timestamp> = zones
            .iter()
            .flat_map(|zone| windows.iter().flat_map(move |window| zone.starts_after(at, *window)))
            .collect();
        starts.sort_unstable();
        if let Some(start) = starts.into_iter().find(|start| open(*start, windows)) {
            return OffsetDateTime::from_unix_timestamp_nanos(start.as_nanosecond()).unwrap_or(now);
        }
    }
    now
}

/// The first instant, from `from` on, that is `at` (minutes of the day) on the wall clock in
/// every zone's turn: the latest zone's (a number spanning two zones gets it at the later one).
pub fn next_local(from: OffsetDateTime, zones: &[&Zone], at: u16) -> OffsetDateTime {
    let Ok(instant) = Timestamp::from_nanosecond(from.unix_timestamp_nanos()) else {
        return from;
    };
    let window = Window {
        start: at % (24 * 60),
        end: at % (24 * 60) + 1,
    };
    zones
        .iter()
        .filter_map(|zone| {
            if zone.minute_at(instant) == window.start {
                return Some(instant);
            }
            zone.starts_after(instant, window).next()
        })
        .max()
        .and_then(|next| OffsetDateTime::from_unix_timestamp_nanos(next.as_nanosecond()).ok())
        .unwrap_or(from)
}

/// Minutes of the day of an `HH:MM` time (00:00 to 24:00).
pub fn minute_of_day(text: &str) -> Option<u16> {
    minutes(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap()
    }

    #[test]
    fn windows_parse_print_and_contain() {
        let tcpa: Window = "08:00-21:00".parse().unwrap();
        assert_eq!(tcpa, Window::TCPA);
        assert_eq!(tcpa.to_string(), "08:00-21:00");
        assert!(tcpa.contains(8 * 60) && tcpa.contains(20 * 60 + 59));
        assert!(!tcpa.contains(7 * 60 + 59) && !tcpa.contains(21 * 60));
        let night: Window = "22:00-06:00".parse().unwrap();
        assert!(night.contains(23 * 60) && night.contains(5 * 60) && !night.contains(12 * 60));
        let all: Window = "00:00-24:00".parse().unwrap();
        assert!((0..24 * 60).all(|minute| all.contains(minute)));
        for bad in ["8:00-21:00", "08:00-25:00", "08:60-09:00", "08:00", "24:30-01:00"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn area_codes_give_zones_and_states() {
        let miami = place_of("+13055550100").unwrap();
        assert_eq!(miami.region, Some("FL"));
        assert_eq!(miami.zones, vec![zone("America/New_York")]);
        assert_eq!(place_of("+12065550100").unwrap().region, Some("WA"));
        assert_eq!(place_of("+14055550100").unwrap().region, Some("OK"));
        // Two zones: the later one decides.
        assert_eq!(place_of("+19075550100").unwrap().zones.len(), 2);
        assert!(place_of("+442071234567").is_none());
        assert!(place_of("+11115550100").is_none());
        // Every line of the data parses, every zone exists.
        let lines = AREA_CODES.lines().filter(|line| !line.starts_with('#')).count();
        assert_eq!(area_codes().len(), lines);
        assert!(area_codes().values().all(|place| !place.zones.is_empty()));
        let mut named: Vec<&str> = AREA_CODES
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split('\t').nth(1))
            .flat_map(|zones| zones.split('&'))
            .chain(["UTC"])
            .collect();
        named.sort_unstable();
        named.dedup();
        assert_eq!(named, TENANT_ZONES);
    }

    #[test]
    fn inside_the_window_goes_now_outside_waits_for_the_local_start() {
        let new_york = zone("America/New_York");
        // 13:00 UTC in January is 08:00 in New York (UTC-5).
        let open = datetime!(2026-01-15 13:00 UTC);
        assert_eq!(next_opening(open, &[&new_york], &[Window::TCPA]), open);
        // 02:30 UTC is 21:30 the evening before: held until 08:00 there.
        let late = datetime!(2026-01-15 02:30 UTC);
        assert_eq!(
            next_opening(late, &[&new_york], &[Window::TCPA]),
            datetime!(2026-01-15 13:00 UTC)
        );
    }

    #[test]
    fn the_window_holds_on_the_wall_clock_across_daylight_saving_changes() {
        let new_york = zone("America/New_York");
        // 2026-03-08 02:00 the clocks go forward (UTC-5 to UTC-4): 08:00 that morning is 12:00 UTC.
        let night_before = datetime!(2026-03-08 03:00 UTC); // 22:00 on the 7th, UTC-5
        assert_eq!(
            next_opening(night_before, &[&new_york], &[Window::TCPA]),
            datetime!(2026-03-08 12:00 UTC)
        );
        // 2026-11-01 02:00 the clocks go back (UTC-4 to UTC-5): 08:00 that morning is 13:00 UTC.
        let night_before = datetime!(2026-11-01 02:00 UTC); // 22:00 on the 31st, UTC-4
        assert_eq!(
            next_opening(night_before, &[&new_york], &[Window::TCPA]),
            datetime!(2026-11-01 13:00 UTC)
        );
        // And the evening of the change closes at 21:00 local, UTC-5 by then.
        assert_eq!(
            next_opening(datetime!(2026-11-02 01:59 UTC), &[&new_york], &[Window::TCPA]),
            datetime!(2026-11-02 01:59 UTC)
        );
        assert_eq!(
            next_opening(datetime!(2026-11-02 02:00 UTC), &[&new_york], &[Window::TCPA]),
            datetime!(2026-11-02 13:00 UTC)
        );
    }

    #[test]
    fn a_local_time_is_found_in_each_zone_and_the_latest_wins() {
        let (new_york, chicago) = (zone("America/New_York"), zone("America/Chicago"));
        let nine = minute_of_day("09:00").unwrap();
        // 2026-01-15 12:00 UTC is 07:00 in New York: 09:00 there is 14:00 UTC.
        let from = datetime!(2026-01-15 12:00 UTC);
        assert_eq!(next_local(from, &[&new_york], nine), datetime!(2026-01-15 14:00 UTC));
        assert_eq!(
            next_local(from, &[&new_york, &chicago], nine),
            datetime!(2026-01-15 15:00 UTC)
        );
        // Past 09:00 already: tomorrow's, on the far side of the spring change (UTC-4 then).
        let from = datetime!(2026-03-07 15:00 UTC);
        assert_eq!(next_local(from, &[&new_york], nine), datetime!(2026-03-08 13:00 UTC));
        // Within 09:00's minute: now.
        let from = datetime!(2026-01-15 14:00:30 UTC);
        assert_eq!(next_local(from, &[&new_york], nine), from);
    }

    #[test]
    fn a_state_window_and_a_second_zone_make_it_stricter() {
        let (new_york, chicago) = (zone("America/New_York"), zone("America/Chicago"));
        let florida: Window = "08:00-20:00".parse().unwrap();
        // 20:30 in New York: open under the TCPA, closed under Florida's 20:00.
        let evening = datetime!(2026-01-16 01:30 UTC);
        assert_eq!(next_opening(evening, &[&new_york], &[Window::TCPA]), evening);
        assert_eq!(
            next_opening(evening, &[&new_york], &[Window::TCPA, florida]),
            datetime!(2026-01-16 13:00 UTC)
        );
        // 08:30 in New York is 07:30 in Chicago: a number in both waits for Chicago's 08:00.
        let morning = datetime!(2026-01-15 13:30 UTC);
        assert_eq!(
            next_opening(morning, &[&new_york, &chicago], &[Window::TCPA]),
            datetime!(2026-01-15 14:00 UTC)
        );
        // A tenant window that never meets the state's gives way to it.
        let night: Window = "22:00-06:00".parse().unwrap();
        assert_eq!(
            next_opening(evening, &[&new_york], &[night, florida]),
            datetime!(2026-01-16 13:00 UTC)
        );
    }
}
